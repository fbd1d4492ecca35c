"""Rule packs on disk and out of the database (read for sync_rules, written for export).

A directory's rules get the source ``pack:<directory name>/<file name>``; sync disables rules
whose source starts with ``pack:<directory name>/`` once they vanish from every file in it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from apps.rules.models import LogRule
from apps.rules.services import RuleInvalid, validate_pack
from apps.rules.spec import RuleSpec, dump_pack, parse_rule

PACK_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class PackSet:
    specs: list[RuleSpec]
    sources: dict[str, str]  # rule key -> "pack:<dir>/<file>"
    source_prefix: str


def read_pack_dir(path: Path) -> PackSet:
    """Validate every pack file in ``path`` (or the one file); raise ``RuleInvalid`` with all errors.

    Errors are prefixed with the file name; a rule id used in two files is an error too.
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PACK_SUFFIXES)
        prefix = f"pack:{path.resolve().name}/"
    elif path.is_file():
        files, prefix = [path], f"pack:{path.resolve().parent.name}/{path.name}"
    else:
        raise RuleInvalid([f"{path}: no such file or directory"])
    if not files:
        raise RuleInvalid([f"{path}: no *.yaml, *.yml or *.json rule packs"])
    errors: list[str] = []
    specs: list[RuleSpec] = []
    sources: dict[str, str] = {}
    for file in files:
        try:
            found = validate_pack(file.read_text(encoding="utf-8"))
        except RuleInvalid as exc:
            errors.extend(f"{file.name}: {e}" for e in exc.errors)
            continue
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(f"{file.name}: cannot read: {exc}")
            continue
        for spec in found:
            if spec.id in sources:
                errors.append(f"{file.name}: rule '{spec.id}': id: duplicate (also in {sources[spec.id]})")
                continue
            sources[spec.id] = f"pack:{file.resolve().parent.name}/{file.name}"
            specs.append(spec)
    if errors:
        raise RuleInvalid(errors)
    return PackSet(specs=specs, sources=sources, source_prefix=prefix)


def export_pack(fmt: str = "yaml", keys: list[str] | None = None) -> tuple[str, int]:
    """(pack text, rule count) of every rule (or those in ``keys``), in key order.

    Tenant override rows are tenant data set through the API, not part of the pack; the pack's own
    ``overrides`` are exported as written.
    """
    rules = LogRule.objects.order_by("key")
    if keys is not None:
        rules = rules.filter(key__in=keys)
    specs = [parse_rule(r.spec) for r in rules]
    return dump_pack(specs, fmt), len(specs)
