"""`integration-assets webhooks serve` is wired into the CLI."""

from __future__ import annotations

from click.testing import CliRunner

from integration_assets.cli import main


def test_webhooks_group_is_registered() -> None:
    result = CliRunner().invoke(main, ["webhooks", "serve", "--help"])
    assert result.exit_code == 0, result.output
    assert "--host" in result.output and "--port" in result.output and "8787" in result.output
