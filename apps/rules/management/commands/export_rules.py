"""``manage.py export_rules [--format yaml|json] [--output FILE]``: every rule as one pack."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from apps.rules.packs import export_pack


class Command(BaseCommand):
    help = "Print (or write) every rule, enabled or not, as a rule pack that sync_rules reads back unchanged."

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=("yaml", "json"), default="yaml")
        parser.add_argument("--output", "-o", help="write to this file instead of stdout")

    def handle(self, *args, **options):
        text, count = export_pack(options["format"])
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
            self.stdout.write(f"exported {count} rules to {options['output']}")
        else:
            self.stdout.write(text, ending="")
