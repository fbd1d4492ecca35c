"""A sweeper process: what beat's ``detect.sweep``, ``deliver.sweep`` and ``alerts.escalate`` run,
in a loop that ticks faster than beat. Several of these at once stand for several beat processes.

    python -m tests.reliability.sweeper_proc --interval 0.3 --lease 3 --grace 1 [--escalate]
"""
from __future__ import annotations

import argparse
import os
import signal
import time
from datetime import timedelta

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alertcenter.settings")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--interval", type=float, default=0.3)
    ap.add_argument("--lease", type=int, default=60, help="DELIVERY_CLAIM_LEASE_SECONDS")
    ap.add_argument("--grace", type=float, default=30.0, help="first-attempt grace before the sweeper takes a row")
    ap.add_argument("--escalate", action="store_true")
    args = ap.parse_args()

    import django

    django.setup()
    from django.conf import settings

    from apps.alerts.escalation import escalate_due
    from apps.delivery import dispatch
    from apps.ingest.tasks import sweep_batches

    settings.DELIVERY_CLAIM_LEASE_SECONDS = args.lease
    dispatch.FIRST_ATTEMPT_GRACE = timedelta(seconds=args.grace)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    totals = {"batches": 0, "claimed": 0, "stuck": 0, "escalated": 0}
    while not stop:
        try:
            totals["batches"] += sweep_batches()
            swept = dispatch.sweep()
            totals["claimed"] += swept["claimed"]
            totals["stuck"] += swept["stuck"]
            if args.escalate:
                totals["escalated"] += escalate_due()
        except Exception as exc:  # noqa: BLE001 - a sweeper survives a failed tick, as beat would
            print(f"sweep failed: {exc!r}", flush=True)
        time.sleep(args.interval)
    print(f"sweeper done: {totals}", flush=True)


if __name__ == "__main__":
    main()
