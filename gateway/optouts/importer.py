"""Streaming CSV import of opt-outs (columns address,brand,channel): flat memory, counts, invalid lines."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gateway.errors import InvalidRecipient
from gateway.models import CHANNELS
from gateway.optouts.store import OptOuts
from gateway.recipients import check_email, parse_phone

MAX_INVALID_REPORTED = 1000


@dataclass
class LineReport:
    """What every streamed import counts: rows read, and the invalid ones (listed up to a thousand)."""

    invalid: list[dict[str, Any]] = field(default_factory=list)
    invalid_count: int = 0
    rows: int = 0


@dataclass
class ImportReport(LineReport):
    """What an opt-out import did."""

    imported: int = 0
    duplicates: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The API answer (invalid lines listed up to a thousand; the count is exact)."""
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "invalid_count": self.invalid_count,
            "rows": self.rows,
        }


R = TypeVar("R", bound=LineReport)


class LineImporter(Generic[R]):
    """Feed it bytes as they arrive; a subclass parses each line and writes what it kept a chunk at a
    time (``_line_in``, ``_flush``), so a file of any size is read in flat memory."""

    def __init__(self, report: R) -> None:
        self.report = report
        self._line = 0
        self._rest = b""

    async def run(self, chunks: AsyncIterable[bytes], progress: Callable[[int, R], None] | None = None) -> R:
        """Consume the whole stream; ``progress(bytes_so_far, report)`` after each chunk written."""
        seen = 0
        async for data in chunks:
            seen += len(data)
            await self.feed(data)
            if progress is not None:
                progress(seen, self.report)
        await self.finish()
        if progress is not None:
            progress(seen, self.report)
        return self.report

    async def feed(self, data: bytes) -> None:
        """Some more bytes of the file."""
        lines = (self._rest + data).split(b"\n")
        self._rest = lines.pop()
        for raw in lines:
            self._line += 1
            await self._line_in(raw)

    async def finish(self) -> None:
        """The end of the file."""
        if self._rest.strip():
            self._line += 1
            await self._line_in(self._rest)
        self._rest = b""
        await self._flush()

    def _invalid(self, error: str, line: int | None = None) -> None:
        self.report.invalid_count += 1
        if len(self.report.invalid) < MAX_INVALID_REPORTED:
            self.report.invalid.append({"line": self._line if line is None else line, "error": error})

    async def _line_in(self, raw: bytes) -> None:
        raise NotImplementedError

    async def _flush(self) -> None:
        raise NotImplementedError


class CsvImporter(LineImporter[ImportReport]):
    """Opt-outs from a CSV of address,brand,channel (header optional)."""

    def __init__(
        self, optouts: OptOuts, tenant: str, region: str, *, by: str = "", chunk: int = 2000
    ) -> None:
        super().__init__(ImportReport())
        self.optouts = optouts
        self.tenant = tenant
        self.region = region
        self.by = by
        self.chunk = chunk
        self._rows: list[tuple[str, str | None, str | None]] = []

    async def _line_in(self, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8-sig" if self._line == 1 else "utf-8").strip("\r")
        except UnicodeDecodeError:
            self._invalid("not UTF-8")
            return
        if not text.strip():
            return
        cells = next(csv.reader([text]))
        if (
            self._line == 1
            and [c.strip().lower() for c in cells[:3]] == ["address", "brand", "channel"][: len(cells[:3])]
        ):
            return  # the header
        self.report.rows += 1
        address = cells[0].strip() if cells else ""
        brand = cells[1].strip() or None if len(cells) > 1 else None
        channel = cells[2].strip() or None if len(cells) > 2 else None
        if len(cells) > 3:
            self._invalid("more than three columns (address,brand,channel)")
            return
        if channel is not None and channel not in CHANNELS:
            self._invalid(f"channel must be one of {', '.join(CHANNELS)} or empty")
            return
        try:
            normalized = check_email(address) if "@" in address else parse_phone(address, self.region).e164
        except InvalidRecipient as exc:
            self._invalid(str(exc))
            return
        self._rows.append((normalized, brand, channel))
        if len(self._rows) >= self.chunk:
            await self._flush()

    async def _flush(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        imported, duplicates = await self.optouts.add_many(self.tenant, rows, source="import", by=self.by)
        self.report.imported += imported
        self.report.duplicates += duplicates
