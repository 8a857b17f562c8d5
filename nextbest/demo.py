"""`nextbest demo`: a realistic synthetic operator, loaded, with keys and numbers to try."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from sqlalchemy import select

from nextbest.campaigns import demo_campaigns
from nextbest.clock import SystemClock
from nextbest.engine import propose
from nextbest.keys import create_key
from nextbest.loader import load_extract
from nextbest.settings import Settings
from nextbest.storage.db import Database
from nextbest.storage.models import DataVersion
from nextbest.storage.warehouse import WarehouseReader, live_history

__all__ = ["EXAMPLES", "prepare_demo"]

# Numbers the generator reserves (see nextbest.synth): (number, channel, what it shows).
EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("13800000001", "store", "a typical customer at the store counter"),
    ("13800000002", "outbound", "a customer nobody may call"),
    ("13800000003", "outbound", "called 20 days ago by telemarketing"),
    ("13800000009", "store", "a number the warehouse does not know"),
)


def prepare_demo(settings: Settings, directory: Path, *, size: int, seed: int, fresh: bool) -> str:
    from nextbest.synth import generate

    clock = SystemClock()
    extract = directory / "extract"
    marker = extract / ".generated"
    wanted = f"size={size} seed={seed}"
    lines: list[str] = []
    started = time.perf_counter()
    regenerated = False
    if fresh or not marker.is_file() or marker.read_text() != wanted:
        generate(extract, size=size, seed=seed)
        marker.write_text(wanted)
        regenerated = True
        lines.append(f"generated {size} subscribers in {time.perf_counter() - started:.1f}s")
    db = Database(settings)
    db.create_schema()
    with db.read() as session:
        active = session.scalar(select(DataVersion).where(DataVersion.status == "active"))
    if regenerated or active is None or active.source != str(extract.resolve()):
        report = load_extract(db, extract, clock)
        lines.append(
            f"loaded data version {report.version_id}: {report.profiles} profiles, "
            f"{report.affinities} affinities, {report.contacts} contacts in {report.seconds}s"
        )
    lines.append(f"demo data ready in {time.perf_counter() - started:.1f}s")
    now = clock.now()
    keys = {
        "clerk": create_key(db, role="clerk", user_id="clerk-ana", store_id="NJ-0001", now=now),
        "agent": create_key(db, role="agent", user_id="agent-bo", now=now),
        "supervisor": create_key(db, role="supervisor", user_id="sup-chen", now=now),
        "admin": create_key(db, role="admin", user_id="admin-dai", now=now),
    }
    base = f"http://{settings.host}:{settings.port}"
    lines += [
        "",
        f"nextbest demo on {settings.database_url}",
        f"  base URL   {base}",
        f"  API docs   {base}/schema  (Swagger UI: {base}/schema/swagger)",
        f"  health     {base}/healthz",
        f"  counter    {base}/demo/crm  (mock CRM page with the pop-up; the clerk key)",
        f"  console    {base}/console  (outbound calls; the agent key)",
        f"  dashboard  {base}/dashboard  (the supervisor or admin key)",
        "",
        "keys (one per role; send as 'Authorization: Bearer KEY'):",
    ]
    lines += [f"  {role:<10} {key}" for role, key in keys.items()]
    lines += ["", "numbers to try:"]
    reader = WarehouseReader(db, cache_size=16, version_check_seconds=0)
    version = reader.active()
    for msisdn, channel, what in EXAMPLES:
        data = reader.customer(version.id, msisdn)
        with db.read() as session:
            history = (
                list(data.contacts)
                + live_history(session, msisdn, now - version.catalog.history_window()).events
            )
        proposal = propose(
            version.catalog,
            msisdn=msisdn,
            profile=data.profile,
            affinities=data.affinities,
            history=history,
            channel=channel,
            events=[],
            now=now,
        )
        if proposal.offers:
            names = ", ".join(p.ranked.offer.id for p in proposal.offers)
            result = f"{len(proposal.offers)} offer(s): {names}"
        else:
            result = f"no offer: {proposal.notice}"
        known = "" if data.profile else " (unknown)"
        lines.append(f"  {msisdn} {channel:<8} {what}{known} -> {result}")
    lines += demo_campaigns(db, clock)  # two live campaigns, one awaiting approval
    body = '{"msisdn": "13800000001", "channel": "store"}'
    lines += [
        "",
        "try it:",
        f"  curl -s {base}/v1/decisions -H 'Authorization: Bearer {keys['clerk']}' "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}",
    ]
    db.dispose()
    return "\n".join(lines)
