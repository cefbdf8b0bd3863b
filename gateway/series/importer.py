"""Streaming CSV import of series: one series per row, flat memory, counts and invalid lines.

The header row names the columns: ``phone`` or ``email``, ``anchor_at``, optionally ``key``, and one
column per param (the ledger's expiry file as it comes: name, points, tier...).
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.errors import ProblemError, Unprocessable
from gateway.series.model import SeriesRequest
from gateway.series.service import SeriesService

MAX_INVALID_REPORTED = 1000
ADDRESS_COLUMNS = ("phone", "email")
FIXED_COLUMNS = ("phone", "email", "anchor_at", "key", "timezone")


@dataclass
class SeriesImportReport:
    """What an import did."""

    started: int = 0
    duplicates: int = 0  # rows whose key had already started the same series
    invalid: list[dict[str, Any]] = field(default_factory=list)
    invalid_count: int = 0
    rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The API answer (invalid lines listed up to a thousand; the count is exact)."""
        return {
            "started": self.started,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "invalid_count": self.invalid_count,
            "rows": self.rows,
        }


class SeriesImporter:
    """Feed it bytes as they arrive; it parses lines and starts their series a chunk at a time."""

    def __init__(
        self,
        series: SeriesService,
        tenant: str,
        definition: str,
        brand: str | None,
        *,
        metadata: dict[str, Any] | None = None,
        chunk: int = 1000,
    ) -> None:
        self.series = series
        self.tenant = tenant
        self.definition = definition
        self.brand = brand
        self.metadata = metadata or {}
        self.chunk = chunk
        self.report = SeriesImportReport()
        self._header: list[str] | None = None
        self._line = 0
        self._rest = b""
        self._rows: list[tuple[int, SeriesRequest | ProblemError]] = []

    async def run(
        self, chunks: AsyncIterable[bytes], progress: Callable[[int, SeriesImportReport], None] | None = None
    ) -> SeriesImportReport:
        """Consume the whole stream; ``progress(bytes_so_far, report)`` after each chunk."""
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
            await self._line_in(raw)

    async def finish(self) -> None:
        """The end of the file."""
        if self._rest.strip():
            await self._line_in(self._rest)
        self._rest = b""
        await self._flush()
        if self._header is None:
            raise Unprocessable("validation_error", "the file is empty: it needs a header row")

    def _invalid(self, line: int, message: str) -> None:
        self.report.invalid_count += 1
        if len(self.report.invalid) < MAX_INVALID_REPORTED:
            self.report.invalid.append({"line": line, "error": message})

    async def _line_in(self, raw: bytes) -> None:
        self._line += 1
        text = raw.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r")
        if not text.strip():
            return
        cells = next(csv.reader([text]))
        if self._header is None:
            header = [c.strip().lower() for c in cells]
            if not any(c in header for c in ADDRESS_COLUMNS) or "anchor_at" not in header:
                raise Unprocessable(
                    "validation_error",
                    "the header row must name a phone or email column and anchor_at "
                    "(then key and one column per param)",
                )
            self._header = header
            return
        self.report.rows += 1
        if len(cells) != len(self._header):
            self._invalid(self._line, f"{len(cells)} columns where the header has {len(self._header)}")
            return
        row = dict(zip(self._header, (c.strip() for c in cells), strict=True))
        to = {c: row[c] for c in ("phone", "email", "timezone") if row.get(c)}
        body = {
            "definition": self.definition,
            "to": to,
            "anchor_at": row.get("anchor_at", ""),
            "brand": self.brand,
            "key": row.get("key") or None,
            "params": {k: v for k, v in row.items() if k not in FIXED_COLUMNS and v != ""},
            "metadata": self.metadata,
        }
        try:
            req: SeriesRequest | ProblemError = msgspec.convert(body, SeriesRequest, strict=False)
        except msgspec.ValidationError as exc:
            self._invalid(self._line, str(exc))
            return
        self._rows.append((self._line, req))
        if len(self._rows) >= self.chunk:
            await self._flush()

    async def _flush(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        answers = await self.series.start_many(self.tenant, [r for _, r in rows])
        for (line, _), (status, body) in zip(rows, answers, strict=True):
            if status == 201:
                self.report.started += 1
            elif status == 200:
                self.report.duplicates += 1
            else:
                self._invalid(line, f"{body.get('code')}: {body.get('detail')}")
