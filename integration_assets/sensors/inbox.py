"""Sensor on the file inbox: one run per new file, keyed by content hash.

The run key is ``<system>/<entity>:<sha256>``, so the same content dropped twice (even under another name)
launches once; once it has loaded, later copies are archived as duplicates without a run. Files that cannot
belong to any contract (wrong folder) are rejected here with their reason.
"""


import json

import dagster as dg

from integration_assets import inbox
from integration_assets.assets.files import ENTITY_TAG, job_name, raw_op_name
from integration_assets.connectors.hashing import content_hash
from integration_assets.contracts.spec import known_entities
from integration_assets.settings import get_settings
from integration_assets.warehouse import ledger
from integration_assets.warehouse.db import ensure_schema, get_engine

MAX_RUNS_PER_TICK = 50


def inbox_run_requests(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    settings = get_settings()
    engine = get_engine(settings.warehouse_url)
    ensure_schema(settings.warehouse_url)
    known = {(s, e) for s, e, _ in known_entities()}
    # Cursor: path -> [size, mtime, sha256], so an unchanged waiting file is not re-hashed every tick.
    cache: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
    new_cache: dict[str, list] = {}
    requests: list[dg.RunRequest] = []
    keys: set[str] = set()
    for f in inbox.scan(settings, include_misplaced=True):
        if (f.system, f.entity) not in known:
            report = inbox.process(f, settings=settings, engine=engine)
            context.log.warning("rejected %s: %s", f.path.name, report.error)
            continue
        key = str(f.path)
        hit = cache.get(key)
        sha = hit[2] if hit and hit[0] == f.size and hit[1] == f.mtime else content_hash(f.path)
        new_cache[key] = [f.size, f.mtime, sha]
        with engine.connect() as conn:
            done = ledger.succeeded_load_for(conn, f.system, f.entity, sha)
        if done:
            inbox.archive_duplicate(f, sha, done, settings=settings, engine=engine)
            new_cache.pop(key, None)
            context.log.info("%s duplicates content loaded by %s; archived", f.path.name, done)
            continue
        run_key = f"{f.system}/{f.entity}:{sha}"
        if run_key in keys:
            continue  # an identical file is already requested this tick
        if len(requests) < MAX_RUNS_PER_TICK:
            keys.add(run_key)
            requests.append(dg.RunRequest(
                run_key=run_key,
                job_name=job_name(f.system, f.entity),
                run_config={"ops": {raw_op_name(f.system, f.entity): {"config": {"files": [str(f.path)]}}}},
                tags={ENTITY_TAG: f"{f.system}.{f.entity}", "integration/file": f.path.name[:200],
                      "integration/sha256": sha},
            ))
    if not requests:
        return dg.SensorResult(skip_reason="no new files in the inbox", cursor=json.dumps(new_cache))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(new_cache))


def build_inbox_sensor(jobs: list) -> dg.SensorDefinition:
    return dg.SensorDefinition(
        name="inbox_sensor",
        evaluation_fn=inbox_run_requests,
        jobs=jobs,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches one ingest run per new file in <inbox>/<system>/<entity>/ (run key = content hash).",
    )
