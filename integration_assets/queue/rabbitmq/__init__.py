"""RabbitMQ backend: quorum queues, publisher confirms, a DLX and retry tiers (pika, public API only).

- ``topology``: the URL options (``RabbitMQConfig``) and the exchanges, queues and bindings they name;
- ``codec``: an event as AMQP properties and ``x-ia-*`` headers, and back; dead-letter records;
- ``publisher``: confirm-mode publishing with a whole batch in flight (``ConfirmingPublisher``);
- ``connection``: connecting, reconnecting and translating pika's failures into queue errors;
- ``consumer``: ``RabbitMQQueue``, the ``Queue`` on all of the above.
"""

from integration_assets.queue.rabbitmq.consumer import RabbitMQQueue
from integration_assets.queue.rabbitmq.topology import RabbitMQConfig

__all__ = ["RabbitMQConfig", "RabbitMQQueue"]
