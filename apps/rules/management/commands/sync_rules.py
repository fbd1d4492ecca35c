"""``manage.py sync_rules DIR``: make the rules table match the rule packs in DIR (cron-safe)."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.rules.packs import read_pack_dir
from apps.rules.services import RuleInvalid, rules_sync


class Command(BaseCommand):
    help = ("Load every *.yaml/*.yml/*.json rule pack in DIR. All-or-nothing: any bad rule refuses the whole "
            "set and lists every error. Rules that came from DIR and vanished from it are disabled.")

    def add_arguments(self, parser):
        parser.add_argument("directory", help="directory of rule packs (or one pack file)")

    def handle(self, *args, **options):
        path = Path(options["directory"])
        try:
            pack = read_pack_dir(path)
            report = rules_sync(specs=pack.specs, sources=pack.sources, actor="sync_rules",
                                disable_missing=pack.source_prefix)
        except RuleInvalid as exc:
            for error in exc.errors:
                self.stderr.write(error)
            raise CommandError(f"{len(exc.errors)} error(s) in {path}; nothing was changed") from None
        self.stdout.write(f"{path}: {report.summary()}")
