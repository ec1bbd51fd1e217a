"""Members out and in as CSV: streamed export, all-or-nothing validated import."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

from tortoise.transactions import in_transaction

from bot.infra.db import IntegrityError
from bot.infra.paging import value_batches
from bot.infra.vault import Vault, mask_phone
from bot.models import Member, PointsKind, Store, StoredValueKind
from bot.rules import earning
from bot.rules.cards import SERIAL_DIGITS, is_valid_card_number
from bot.rules.parsing import Birthday, normalize_phone, normalize_text, parse_birthday
from bot.services import loyalty, members, wallet
from bot.services.ops.common import OpsError, remove
from bot.services.staff import Actor, audit

EXPORT_BATCH = 1000
IMPORT_BATCH = 500
IMPORT_REASON = "迁移导入"
MAX_IMPORT_POINTS = 100_000_000
MAX_IMPORT_STORED_FEN = 1_000_000_000  # ¥10,000,000; the column is a 32-bit integer of fen
MAX_NAME = 32  # Member.name



EXPORT_COLUMNS = ("card_no", "phone", "name", "birthday", "tier", "points", "stored_value",
                  "store", "registered_at")
# A cell starting with one of these is a formula to Excel (CSV injection): members choose their
# names, so names get a leading apostrophe, which Excel hides and import removes again.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ExportResult:
    count: int
    batches: int


def birthday_text(year: int | None, month: int | None, day: int | None) -> str:
    if not (month and day):
        return ""
    return f"{year:04d}-{month:02d}-{day:02d}" if year else f"{month:02d}-{day:02d}"


def _safe_cell(text: str) -> str:
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def _export_chunk(vault: Vault, rows: Sequence[tuple], stores: dict[int, str],
                  tz: dt.tzinfo) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    for (member_id, card_no, phone_enc, name, year, month, day, tier, points, stored, store_id,
         registered_at) in rows:
        try:
            phone = vault.decrypt(phone_enc)
        except ValueError as exc:  # e.g. a key missing from security.previous_keys
            raise OpsError(f"member {member_id} ({card_no}): cannot decrypt the phone: {exc}",
                           1) from None
        writer.writerow([
            card_no, phone, _safe_cell(name or ""),
            birthday_text(year, month, day), tier, points, earning.fen_to_yuan(stored),
            stores.get(store_id, "") if store_id else "",
            registered_at.astimezone(tz).isoformat(timespec="seconds") if registered_at else "",
        ])
    return out.getvalue().encode("utf-8")


async def export_members(bot, out: BinaryIO | _TextSink, *,
                         batch: int = EXPORT_BATCH) -> ExportResult:
    """Every member not erased, as UTF-8 CSV with a BOM (Excel then reads Chinese correctly),
    written to the binary stream `out` batch by batch."""
    header = io.StringIO()
    csv.writer(header).writerow(EXPORT_COLUMNS)
    await asyncio.to_thread(out.write, "\ufeff".encode() + header.getvalue().encode())
    stores = dict(await Store.all().values_list("id", "code"))
    tz = bot.config.shop.tz
    count = batches = 0
    async for rows in value_batches(Member.filter(erased_at__isnull=True), "id", "card_no",
                                    "phone_enc", "name", "birth_year", "birth_month",
                                    "birth_day", "tier", "points", "stored_value", "store_id",
                                    "registered_at", size=batch):
        # Decrypting and formatting run beside the loop, and so does the write.
        chunk = await asyncio.to_thread(_export_chunk, bot.vault, rows, stores, tz)
        await asyncio.to_thread(out.write, chunk)
        count += len(rows)
        batches += 1
    await asyncio.to_thread(out.flush)
    return ExportResult(count, batches)


class _TextSink:
    """Bytes to a text stream that has no binary buffer underneath (a replaced sys.stdout)."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, data: bytes) -> int:
        return self.stream.write(data.decode("utf-8"))

    def flush(self) -> None:
        self.stream.flush()


async def export_members_to(bot, target: str, *, batch: int = EXPORT_BATCH) -> ExportResult:
    """To a file (written as FILE.part and renamed when complete) or to stdout ("-")."""
    if target == "-":
        await asyncio.to_thread(sys.stdout.flush)
        stream = getattr(sys.stdout, "buffer", None) or _TextSink(sys.stdout)
        return await export_members(bot, stream, batch=batch)
    path = Path(target)
    part = path.with_name(path.name + ".part")
    try:
        await asyncio.to_thread(lambda: path.parent.mkdir(parents=True, exist_ok=True))
        fh = await asyncio.to_thread(part.open, "wb")
    except OSError as exc:
        raise OpsError(f"cannot write {path}: {exc.strerror or exc}", 2) from None
    try:
        try:
            result = await export_members(bot, fh, batch=batch)
        finally:
            await asyncio.to_thread(fh.close)
        await asyncio.to_thread(os.replace, part, path)
    except BaseException:
        await asyncio.to_thread(remove, part)
        raise
    return result


# --- import ---

IMPORT_COLUMNS = ("phone", "name", "birthday", "card_no", "points", "stored_value", "tier",
                  "store", "registered_at")
_ZERO_YUAN = re.compile(r"0+(\.0{1,2})?")


@dataclass(frozen=True)
class Problem:
    row: int  # as a spreadsheet numbers it: the header is row 1
    column: str
    message: str
    value: str = ""  # phones masked

    def __str__(self) -> str:
        shown = f" ({self.value})" if self.value else ""
        return f"row {self.row}, {self.column}: {self.message}{shown}"


@dataclass
class ImportRow:
    row: int
    phone: str
    hashes: list[str]  # the phone's lookup hash under every key the vault holds
    name: str
    birthday: Birthday | None
    card_no: str | None
    points: int
    stored_fen: int
    tier: str
    store: str
    registered_at: dt.datetime | None


@dataclass
class ImportResult:
    rows: int
    imported: int = 0  # with dry_run: would be imported
    already_there: int = 0
    problems: list[Problem] = field(default_factory=list)
    dry_run: bool = False
    unchecked_cards: int = 0  # kept card numbers without a valid check digit

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _Rules:
    tiers: tuple[str, ...]
    stores: frozenset[str]
    default_store: str
    today: dt.date
    now: dt.datetime
    tz: dt.tzinfo


def read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(row number, cells)]) of a CSV file; UTF-8 (with or without BOM), or GB18030
    as Excel on Chinese Windows saves it. Blank rows are left out."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise OpsError(f"no file {path}", 2) from None
    except OSError as exc:
        raise OpsError(f"cannot read {path}: {exc.strerror or exc}", 2) from None
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise OpsError(f"{path}: neither UTF-8 nor GB18030 text; save it as CSV UTF-8", 2)
    try:
        records = [(number, cells) for number, cells in
                   enumerate(csv.reader(io.StringIO(text, newline="")), start=1)
                   if any(cell.strip() for cell in cells)]
    except csv.Error as exc:
        raise OpsError(f"{path}: not a readable CSV file ({exc})", 2) from None
    if not records:
        raise OpsError(f"{path} is empty: the first row must name the columns", 2)
    (_, header), *rows = records
    return [cell.strip().lower() for cell in header], rows


def check_header(header: list[str]) -> None:
    seen = set()
    for name in filter(None, header):  # unnamed columns: Excel leaves some; must stay empty
        if name in seen:
            raise OpsError(f"column {name!r} appears twice in the header", 2)
        seen.add(name)
    unknown = [name for name in header if name and name not in IMPORT_COLUMNS]
    if unknown:
        raise OpsError(f"unknown column(s) {', '.join(map(repr, unknown))}; the columns are "
                       f"{', '.join(IMPORT_COLUMNS)} (only phone is required)", 2)
    if "phone" not in header:
        raise OpsError("the header has no phone column (the only required one)", 2)


def _parse_yuan_or_zero(text: str) -> int | None:
    cleaned = text.removeprefix("¥").removeprefix("￥").removesuffix("元").strip()
    if _ZERO_YUAN.fullmatch(cleaned):
        return 0
    return earning.parse_yuan(cleaned, MAX_IMPORT_STORED_FEN)


def _parse_registered(text: str, rules: _Rules) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("/", "-"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=rules.tz)  # the shop's local time
    return value.astimezone(dt.UTC)


def validate_rows(header: list[str], records: list[tuple[int, list[str]]], rules: _Rules,
                  vault: Vault) -> tuple[list[ImportRow], list[Problem]]:
    """Every row checked on its own and against the rest of the file (no database here)."""
    rows: list[ImportRow] = []
    problems: list[Problem] = []
    phones: dict[str, int] = {}
    cards: dict[str, int] = {}
    for number, cells in records:
        found: list[Problem] = []

        def bad(column: str, message: str, value: str = "", number: int = number,
                found: list[Problem] = found) -> None:
            found.append(Problem(number, column, message, value))

        if len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
            bad("cells", f"{len(cells)} cells but the header has {len(header)} columns")
        if any(not name and i < len(cells) and cells[i].strip()
               for i, name in enumerate(header)):
            bad("cells", "a value in a column without a name in the header")
        cell = {name: cells[i].strip() if i < len(cells) else ""
                for i, name in enumerate(header)}
        for column in ("card_no", "points", "stored_value", "registered_at"):
            if column in cell:  # full-width digits, as Chinese input methods type them
                cell[column] = normalize_text(cell[column])

        raw_phone = cell["phone"]
        phone = normalize_phone(raw_phone) if raw_phone else None
        if not raw_phone:
            bad("phone", "missing")
        elif phone is None:
            bad("phone", "not a mainland mobile number", mask_phone(raw_phone))
        elif phone in phones:
            bad("phone", f"same phone as row {phones[phone]}", mask_phone(phone))
        else:
            phones[phone] = number

        name = cell.get("name", "")
        if name.startswith("'") and name[1:].startswith(_FORMULA_START):
            name = name[1:]  # the export's guard against Excel formulas
        if len(name) > MAX_NAME:
            bad("name", f"longer than {MAX_NAME} characters", name[:12] + "…")

        birthday = None
        if cell.get("birthday"):
            birthday = parse_birthday(cell["birthday"], rules.today)
            if birthday is None:
                bad("birthday", "not a date of birth (e.g. 1990-05-01, 05-01, 5月1日, 0501)",
                    cell["birthday"])

        card_no = cell.get("card_no") or None
        if card_no is not None:
            if not (card_no.isascii() and card_no.isdigit() and 6 <= len(card_no) <= 16):
                bad("card_no", "must be 6 to 16 digits (leave it blank for a new card number)",
                    card_no)
            elif card_no in cards:
                bad("card_no", f"same card number as row {cards[card_no]}", card_no)
            else:
                cards[card_no] = number

        points = 0
        if cell.get("points"):
            text = cell["points"]
            if not (text.isascii() and text.isdigit()) or int(text) > MAX_IMPORT_POINTS:
                bad("points", f"must be a whole number from 0 to {MAX_IMPORT_POINTS}", text)
            else:
                points = int(text)

        stored_fen = 0
        if cell.get("stored_value"):
            fen = _parse_yuan_or_zero(cell["stored_value"])
            if fen is None:
                bad("stored_value", "must be yuan, 0 or more, at most two decimals, at most "
                    f"{earning.fen_to_yuan(MAX_IMPORT_STORED_FEN)}", cell["stored_value"])
            else:
                stored_fen = fen

        tier = cell.get("tier") or rules.tiers[0]
        if tier not in rules.tiers:
            bad("tier", f"not a configured tier; the tiers are {', '.join(rules.tiers)}", tier)

        store = cell.get("store") or rules.default_store
        if store not in rules.stores:
            bad("store", f"no such store; the stores are {', '.join(sorted(rules.stores))}",
                store)

        registered_at = None
        if cell.get("registered_at"):
            try:
                registered_at = _parse_registered(cell["registered_at"], rules)
            except ValueError:
                bad("registered_at", "not a date or date-time (2024-05-01, "
                    "2024-05-01 10:30:00 or 2024-05-01T10:30:00+08:00)", cell["registered_at"])
            else:
                if registered_at > rules.now:
                    bad("registered_at", "in the future", cell["registered_at"])

        if found:
            problems.extend(found)
        else:
            assert phone is not None
            rows.append(ImportRow(number, phone, vault.lookup_hashes(phone), name, birthday,
                                  card_no, points, stored_fen, tier, store, registered_at))
    return rows, problems


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def _existing_phones(rows: Sequence[ImportRow]) -> set[str]:
    hashes = [h for row in rows for h in row.hashes]
    found: set[str] = set()
    for chunk in _chunks(hashes, 500):
        found.update(await Member.filter(phone_hash__in=list(chunk))
                     .values_list("phone_hash", flat=True))
    return found


async def _check_cards(rows: list[ImportRow], present: set[str], prefix: str) -> list[Problem]:
    """Kept card numbers must be free, and must not be one this system will issue later."""
    problems = []
    wanted = {row.card_no: row for row in rows
              if row.card_no and not present.intersection(row.hashes)}
    own_length = len(prefix) + SERIAL_DIGITS + 1
    for card_no, row in wanted.items():
        if (len(card_no) == own_length and card_no.startswith(prefix)
                and is_valid_card_number(card_no)):
            problems.append(Problem(row.row, "card_no", "has the form of the card numbers "
                                    f"memberbot issues ({prefix}…): a card issued later could "
                                    "get the same number; leave it blank for a new one",
                                    card_no))
    for chunk in _chunks(list(wanted), 500):
        for card_no in await Member.filter(card_no__in=list(chunk)).values_list("card_no",
                                                                                 flat=True):
            problems.append(Problem(wanted[card_no].row, "card_no",
                                    "already the card number of another member", card_no))
    return sorted(problems, key=lambda p: p.row)


class Progress:
    """"\\r导入 1200/5000 [#####...............] 24%" on a terminal; otherwise a line every
    `every` rows (logs stay readable)."""

    def __init__(self, stream: TextIO | None = None, *, label: str = "导入", width: int = 20,
                 every: int = 1000):
        self.stream = stream or sys.stderr
        self.label, self.width, self.every = label, width, every
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self._last = 0
        self._drawn = False

    def update(self, done: int, total: int) -> None:
        if self.tty:
            filled = self.width * done // total if total else self.width
            percent = 100 * done // total if total else 100
            self.stream.write(f"\r{self.label} {done}/{total} "
                              f"[{'#' * filled}{'.' * (self.width - filled)}] {percent}%")
            self._drawn = True
        elif done // self.every > self._last // self.every or (done == total
                                                                and done != self._last):
            self.stream.write(f"{self.label} {done}/{total}\n")
        self._last = done
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


async def _import_batch(bot, rows: Sequence[ImportRow], stores: dict[str, Store],
                        expires_on: dt.date | None) -> int:
    """One transaction: every row of the batch whose phone is not a member yet. Returns how
    many were imported."""
    first_tier = bot.config.tiers[0].name
    actor = Actor.cli()
    imported = 0
    async with in_transaction():
        present = await _existing_phones(rows)  # again, inside: someone may have registered
        for row in rows:
            if present.intersection(row.hashes):
                continue
            store = stores[row.store]
            member = await members.create_member(
                bot.vault, bot.config.shop.card_prefix, row.phone, card_no=row.card_no,
                name=row.name, birthday=row.birthday, store_id=store.id, tier=row.tier,
                # Tiers follow spend, and an imported member has none here yet: a tier brought
                # over is kept as a floor, as if a manager had set it (设等级).
                tier_floor=None if row.tier == first_tier else row.tier,
                registered_at=row.registered_at)
            if row.points:
                await loyalty.append_points(member.id, row.points, kind=PointsKind.ADJUST,
                                            reason=IMPORT_REASON,
                                            key=f"import:{member.id}:points",
                                            expires_on=expires_on)
            if row.stored_fen:
                # An opening balance, as a top-up entry of the member's store.
                await wallet.append_stored_value(member.id, row.stored_fen,
                                                 kind=StoredValueKind.TOPUP, reason=IMPORT_REASON,
                                                 key=f"import:{member.id}:stored_value",
                                                 actor=Actor.cli(store))
            await audit(actor, "import_member", member=member.id, detail=IMPORT_REASON,
                        after={"card_no": member.card_no, "tier": row.tier,
                               "points": row.points, "stored_value": row.stored_fen,
                               "store": row.store})
            imported += 1
    return imported


async def import_members(bot, path: Path, *, dry_run: bool = False,
                         progress: Progress | None = None,
                         batch: int = IMPORT_BATCH) -> ImportResult:
    """Phase 1 validates every row (nothing is written if any is bad); phase 2 imports in
    transactions of `batch` rows, skipping phones that are members already."""
    config = bot.config
    header, records = await asyncio.to_thread(read_csv, path)
    check_header(header)
    stores = {store.code: store for store in await Store.all()}
    rules = _Rules(tiers=tuple(t.name for t in config.tiers), stores=frozenset(stores),
                   default_store=config.stores[0].code if config.stores else "",
                   today=bot.today(), now=bot.now(), tz=config.shop.tz)
    rows, problems = await asyncio.to_thread(validate_rows, header, records, rules, bot.vault)
    present = await _existing_phones(rows)
    problems = sorted(problems + await _check_cards(rows, present, config.shop.card_prefix),
                      key=lambda p: p.row)
    already = sum(1 for row in rows if present.intersection(row.hashes))
    result = ImportResult(rows=len(records), problems=problems, dry_run=dry_run,
                          already_there=already, imported=len(rows) - already)
    result.unchecked_cards = sum(1 for row in rows if row.card_no
                                 and not present.intersection(row.hashes)
                                 and not is_valid_card_number(row.card_no))
    if problems or dry_run:
        return result

    expires_on = earning.expiry_for(bot.today(), config.points.expiry,
                                    config.points.expiry_months)
    result.imported = result.already_there = done = 0
    try:
        for chunk in _chunks(rows, batch):
            for attempt in range(3):
                try:
                    imported = await _import_batch(bot, chunk, stores, expires_on)
                    break
                except IntegrityError:
                    # A phone registered in chat while this batch ran: the batch rolled back
                    # as a whole; run it again (that member is then skipped as already there).
                    if attempt == 2:
                        raise
            result.imported += imported
            result.already_there += len(chunk) - imported
            done += len(chunk)
            if progress:
                progress.update(done, len(rows))
    finally:
        if progress:
            progress.close()
    return result

