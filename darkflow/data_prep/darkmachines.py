"""Reader for the Dark Machines challenge CSV format, vectorized with numpy and awkward.

One event per line, fields separated by ``;`` (usually with a trailing ``;``)::

    event ID; process ID; event weight; MET; METphi; obj1,E1,pt1,eta1,phi1; obj2,E2,pt2,eta2,phi2; ...

Energies and momenta are in MeV and are converted to GeV on read. Object codes are the keys of
:data:`~darkflow.data_prep.chunk.DARKMACHINES_CODES`.

The file is read in binary blocks cut at the last newline, so memory does not grow with the file size.
Every block is parsed with whole-array numpy operations: separator positions, per-line and per-field
token counts, a decimal parser that reads eight digits at a time from unaligned 64-bit words (SWAR;
bit-identical to ``float``, and anything it does not take, such as exponents or ``nan``, goes through
numpy's own string conversion), and a lookup table for object codes. There is no Python loop over
events, lines, objects or characters; the only one describes the first bad line of an error message.

References: Aarrestad et al., "The Dark Machines Anomaly Score Challenge: Benchmark Data and Model
Independent Event Classification for the Large Hadron Collider", SciPost Phys. 12, 043 (2022).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import awkward as ak
import numpy as np

from darkflow.data_prep.chunk import DARKMACHINES_CODES, KINEMATIC_FIELDS, OBJECT_TYPES, EventChunk
from darkflow.errors import ConfigError, DarkFlowError, DataError, InputError

__all__ = ["DarkMachinesReader"]

MEV_PER_GEV = 1000.0
N_HEADER = 5
HEADER_NAMES: tuple[str, ...] = ("event ID", "process ID", "event weight", "MET", "METphi")
OBJECT_PARTS: tuple[str, ...] = ("code", *KINEMATIC_FIELDS)
MAX_PROCESS_LEN = 256
"""Longest accepted process ID, in bytes (a longer one is a malformed line)."""
MAX_NUMBER_LEN = 128
"""Longest accepted number token, in bytes (a longer one is a malformed line)."""
UNIT_CHECK_EVENTS = 10_000
"""Events read from the start of a file by :meth:`DarkMachinesReader.unit_warning`."""
LOWEST_THRESHOLD_GEV = 15.0
"""The lowest Dark Machines object threshold (electrons and muons, pT > 15 GeV; DESIGN section 3)."""
PLAUSIBLE_MEDIAN_GEV = 1.0
"""A median object pT (or, without objects, a median MET) below this after the MeV -> GeV conversion means the
file was written in GeV: Dark Machines objects all have pT above 15 GeV."""

_COMMA, _SEMI, _NL = ord(","), ord(";"), ord("\n")
_LEAD = 16
"""Zero bytes before a block, so that the 16 bytes before any token can be read as words."""
_PAD = bytes(2 * MAX_PROCESS_LEN)
_LEAD_BYTES = bytes(_LEAD)
_WHITESPACE_BYTES = (b" ", b"\t", b"\r", b"\v", b"\f")

# Eight-digit words (SWAR): ASCII digits in the bytes of a little-endian uint64, first digit lowest.
_ASCII_ZEROS = np.uint64(0x3030303030303030)
_HIGH_NIBBLES = np.uint64(0xF0F0F0F0F0F0F0F0)
_ASCII_DOTS = np.uint64(0x2E2E2E2E2E2E2E2E)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_BYTE_INDEX = np.uint64(0x0001020304050607)  # (2**(8 i) * _BYTE_INDEX) >> 56 == i
_KEEP_LAST = np.array([0] + [((1 << (8 * m)) - 1) << (8 * (8 - m)) for m in range(1, 9)], dtype=np.uint64)
"""``_KEEP_LAST[m]`` keeps the last ``m`` bytes (in memory order) of a word."""
_POW10_UINT = 10 ** np.arange(9, dtype=np.uint64)
_POW10_FLOAT = 10.0 ** np.arange(23)
# Object code (1 or 2 ASCII bytes as a little-endian uint16) -> index in OBJECT_TYPES, or -1.
_CODE_TYPE = np.full(1 << 16, -1, dtype=np.int8)
for _code, _name in DARKMACHINES_CODES.items():
    _CODE_TYPE[int.from_bytes(_code.encode("ascii"), "little")] = OBJECT_TYPES.index(_name)
del _code, _name
_SIGN = np.array([1.0, -1.0])
_VALID_CODES = ", ".join(DARKMACHINES_CODES)


class DarkMachinesReader:
    """Streams a Dark Machines CSV file as :class:`~darkflow.data_prep.chunk.EventChunk` objects.

    Arguments:
        path: the CSV file.
        chunk_size: most events per chunk; every chunk but the last of an iteration holds exactly this
            many (lines dropped by ``on_error="skip"`` are replaced by the next ones).
        on_error: ``"fail"`` raises on the first malformed line or unknown object code; ``"skip"`` drops
            such lines and counts them in :attr:`n_skipped`.
        start, stop: read only the events whose 0-based index among the non-blank lines of the file is
            in ``[start, stop)`` (``stop=None``: to the end). Malformed lines count as events here, so
            the outputs of consecutive ranges concatenate to the output of the whole file.

    Every chunk of ``N`` events has, for each name in ``OBJECT_TYPES``, a jagged awkward record array
    ``N * var * {E, pt, eta, phi: float64}`` (GeV, radians; objects in file order), ``met`` and
    ``met_phi`` float64 ``(N,)`` (GeV, radians), ``weight`` float64 ``(N,)``, ``event_id`` int64
    ``(N,)``, ``process`` str ``(N,)``, ``source = str(path)``, ``first_line`` the 1-based physical line
    number of its first event, and ``extra["line"]`` int64 ``(N,)``: the line number of every event.

    Attributes:
        n_read: events yielded so far in the current iteration.
        n_skipped: malformed lines dropped so far in the current iteration (``on_error="skip"``).
        block_bytes: bytes read from the file at a time (a tuning knob; lines longer than this still
            work).

    Raises:
        InputError: missing or unreadable file, a file with no events, a malformed line (``path:LINE:``
            and what was expected).
        DataError: an unknown object code (``path:LINE:`` and the valid codes).
        ConfigError: a bad argument.
    """

    block_bytes: int = 1 << 20
    n_read: int
    n_skipped: int

    def __init__(
        self,
        path: str | os.PathLike[str],
        chunk_size: int = 100_000,
        on_error: Literal["fail", "skip"] = "fail",
        start: int = 0,
        stop: int | None = None,
    ) -> None:
        if not _is_int(chunk_size) or chunk_size < 1:
            raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if on_error not in ("fail", "skip"):
            raise ConfigError(f"on_error must be one of 'fail', 'skip', got {on_error!r}")
        if not _is_int(start) or start < 0:
            raise ConfigError(f"start must be a non-negative integer, got {start!r}")
        if stop is not None and (not _is_int(stop) or stop < start):
            raise ConfigError(f"stop must be None or an integer >= start ({start}), got {stop!r}")
        self.path = Path(path)
        self.source = str(path)
        self.chunk_size = int(chunk_size)
        self.on_error: Literal["fail", "skip"] = on_error
        self.start = int(start)
        self.stop = None if stop is None else int(stop)
        self.n_read = 0
        self.n_skipped = 0
        _check_file(self.path, self.source)

    def count_events(self) -> int:
        """Number of events (non-blank lines) in the whole file, counted without parsing.

        ``start`` and ``stop`` are ignored: this is what they index into.
        """
        n = 0
        with _open(self.path, self.source) as f:
            for buf in _blocks(f, self.block_bytes, self.source):
                if not _has_whitespace(buf) and b"\n\n" not in buf and buf[0] != _NL:
                    n += buf.count(b"\n")
                else:
                    n += int(np.count_nonzero(_line_lengths(_normalize(buf)) > 0))
        return n

    def __iter__(self) -> Iterator[EventChunk]:
        """Yield chunks of at most ``chunk_size`` events, in file order."""
        self.n_read = 0
        self.n_skipped = 0
        stop = np.iinfo(np.int64).max if self.stop is None else self.stop
        pending: list[_Columns] = []  # parsed blocks not yet yielded, concatenated once per chunk
        n_pending = 0
        line_no = 1  # physical line number of the first line of the next block
        n_events = 0  # non-blank lines before the next block
        with _open(self.path, self.source) as f:
            for raw in _blocks(f, self.block_bytes, self.source):
                n_lines_raw = raw.count(b"\n")
                buf = _normalize(raw)
                length = _line_lengths(buf)  # (L,)
                assert len(length) == n_lines_raw
                nonblank = length > 0
                event_index = n_events + np.cumsum(nonblank) - 1  # (L,) valid where nonblank
                wanted = np.flatnonzero(nonblank & (event_index >= self.start) & (event_index < stop))
                if len(wanted):
                    ends = np.cumsum(length + 1)  # (L,) offset just past each line's newline
                    lo, hi = int(wanted[0]), int(wanted[-1])
                    begin = int(ends[lo - 1]) if lo else 0
                    cols, n_bad = _parse_block(
                        buf[begin : int(ends[hi])], line_no + lo, self.source, self.on_error == "fail"
                    )
                    self.n_skipped += n_bad
                    pending.append(cols)
                    n_pending += len(cols)
                    if n_pending >= self.chunk_size:
                        cols = _Columns.concat(pending)
                        n_full = n_pending - n_pending % self.chunk_size
                        for i in range(0, n_full, self.chunk_size):
                            yield self._emit(cols, i, i + self.chunk_size)
                        pending = [cols.slice(n_full, n_pending)]
                        n_pending -= n_full
                line_no += n_lines_raw
                n_events += int(np.count_nonzero(nonblank))
                if n_events >= stop and n_events > 0:
                    break
        if n_events == 0:
            raise InputError(f"{self.source}: no events (the file is empty or has only blank lines)")
        if n_pending:
            yield self._emit(_Columns.concat(pending), 0, n_pending)

    def unit_warning(self, events: int = UNIT_CHECK_EVENTS) -> str | None:
        """A one-line warning, with the evidence, when the file's values look like GeV instead of MeV.

        Reads the first ``events`` events (from ``start``; malformed lines are skipped here and reported by
        the conversion itself). The evidence: the median object E and pT and the median MET as written, and
        the fraction of objects below :data:`LOWEST_THRESHOLD_GEV` after the MeV -> GeV conversion. ``None``
        when the values are plausible in MeV or there is nothing to judge.
        """
        sample = DarkMachinesReader(self.path, chunk_size=events, on_error="skip", start=self.start,
                                    stop=self.start + events if self.stop is None else min(self.stop,
                                                                                          self.start + events))
        try:
            chunk = next(iter(sample), None)
        except DarkFlowError:
            return None
        if chunk is None or len(chunk) == 0:
            return None
        energy = np.concatenate([ak.to_numpy(ak.flatten(chunk.objects[t]["E"])) for t in OBJECT_TYPES])
        pt = np.concatenate([ak.to_numpy(ak.flatten(chunk.objects[t]["pt"])) for t in OBJECT_TYPES])
        met = chunk.met[np.isfinite(chunk.met)]
        pt, energy = pt[np.isfinite(pt)], energy[np.isfinite(energy)]
        judged = pt if len(pt) else met
        if len(judged) == 0 or not np.median(judged) < PLAUSIBLE_MEDIAN_GEV:
            return None
        written = [f"the median MET is {np.median(met) * MEV_PER_GEV:.4g}" if len(met) else ""]
        if len(pt):
            written.insert(0, f"the median object E is {np.median(energy) * MEV_PER_GEV:.4g} and pT "
                              f"{np.median(pt) * MEV_PER_GEV:.4g}")
            below = f"{np.mean(pt < LOWEST_THRESHOLD_GEV):.0%} of the {len(pt)} objects fall below " \
                    f"{LOWEST_THRESHOLD_GEV:g} GeV (the lowest object threshold) and would be dropped"
        else:
            below = "no event has objects"
        return (f"{self.source}: the values look like GeV, but the Dark Machines CSV format is in MeV: in the "
                f"first {len(chunk)} events {' and '.join(w for w in written if w)} (as written), so after the "
                f"MeV -> GeV conversion {below}; if the file is in GeV, multiply E, pT and MET by 1000")

    def _emit(self, cols: _Columns, i: int, j: int) -> EventChunk:
        chunk = cols.slice(i, j).to_chunk(self.source)
        self.n_read += len(chunk)
        return chunk

    def __repr__(self) -> str:
        return (
            f"DarkMachinesReader({self.source!r}, chunk_size={self.chunk_size}, on_error={self.on_error!r}, "
            f"start={self.start}, stop={self.stop})"
        )


@dataclass
class _Columns:
    """Parsed events of one or more blocks: ``N`` events with ``M`` objects in file order."""

    event_id: np.ndarray  # (N,) int64
    process: np.ndarray  # (N,) str
    weight: np.ndarray  # (N,) float64
    met: np.ndarray  # (N,) float64, GeV
    met_phi: np.ndarray  # (N,) float64
    line: np.ndarray  # (N,) int64, physical line numbers
    offsets: np.ndarray  # (N + 1,) int64, objects of event i are [offsets[i], offsets[i + 1])
    otype: np.ndarray  # (M,) int8, index in OBJECT_TYPES
    kin: tuple[np.ndarray, ...]  # E, pt, eta, phi: each (M,) float64, GeV

    def __len__(self) -> int:
        return len(self.event_id)

    def slice(self, i: int, j: int) -> _Columns:
        a, b = int(self.offsets[i]), int(self.offsets[j])
        return _Columns(
            self.event_id[i:j],
            self.process[i:j],
            self.weight[i:j],
            self.met[i:j],
            self.met_phi[i:j],
            self.line[i:j],
            self.offsets[i : j + 1] - a,
            self.otype[a:b],
            tuple(k[a:b] for k in self.kin),
        )

    @staticmethod
    def concat(parts: list[_Columns]) -> _Columns:
        if len(parts) == 1:
            return parts[0]
        starts = np.cumsum([0] + [int(p.offsets[-1]) for p in parts[:-1]])
        return _Columns(
            np.concatenate([p.event_id for p in parts]),
            np.concatenate([p.process for p in parts]),
            np.concatenate([p.weight for p in parts]),
            np.concatenate([p.met for p in parts]),
            np.concatenate([p.met_phi for p in parts]),
            np.concatenate([p.line for p in parts]),
            np.concatenate(
                [parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, starts, strict=True)]
            ),
            np.concatenate([p.otype for p in parts]),
            tuple(np.concatenate([p.kin[f] for p in parts]) for f in range(len(KINEMATIC_FIELDS))),
        )

    def to_chunk(self, source: str) -> EventChunk:
        n = len(self)
        counts = np.diff(self.offsets)  # (N,)
        event = np.repeat(np.arange(n), counts)  # (M,)
        per_type = np.bincount(event * len(OBJECT_TYPES) + self.otype, minlength=n * len(OBJECT_TYPES))
        per_type = per_type.reshape(n, len(OBJECT_TYPES))  # (N, T)
        order = np.argsort(self.otype, kind="stable")  # (M,) grouped by type, file order within a type
        kin = [k[order] for k in self.kin]
        bounds = np.concatenate([[0], np.cumsum(per_type.sum(axis=0))])  # (T + 1,)
        objects: dict[str, ak.Array] = {}
        for t, name in enumerate(OBJECT_TYPES):
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(per_type[:, t], out=offsets[1:])
            a, b = int(bounds[t]), int(bounds[t + 1])
            record = ak.contents.RecordArray(
                [ak.contents.NumpyArray(k[a:b]) for k in kin], list(KINEMATIC_FIELDS), length=b - a
            )
            objects[name] = ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), record))
        # Copies, so that a chunk kept by the caller does not hold on to a whole block.
        return EventChunk(
            objects=objects,
            met=self.met.copy(),
            met_phi=self.met_phi.copy(),
            weight=self.weight.copy(),
            event_id=self.event_id.copy(),
            process=self.process.copy(),
            source=source,
            first_line=int(self.line[0]),
            extra={"line": self.line.copy()},
        )


def _parse_block(buf: bytes, first_line: int, source: str, fail: bool) -> tuple[_Columns, int]:
    """Parse normalized complete lines (``buf`` ends with a newline; blank lines have length 0).

    Returns the parsed events and the number of bad lines dropped; with ``fail``, raises on the first
    bad line instead.
    """
    raw = _LEAD_BYTES + buf + _PAD
    a = np.frombuffer(raw, dtype=np.uint8)  # positions below are indices into a
    words = np.ndarray((len(raw) - 7,), dtype="<u8", buffer=raw, strides=(1,))  # words[i]: a[i : i + 8]
    halves = np.ndarray((len(raw) - 1,), dtype="<u2", buffer=raw, strides=(1,))  # halves[i]: a[i : i + 2]
    body = a[_LEAD : _LEAD + len(buf)]
    sep = np.flatnonzero((body == _SEMI) | (body == _COMMA) | (body == _NL))
    sep += _LEAD  # (K,) token k is a[tok_start[k] : sep[k]]
    kind = a[sep]
    tok_start = np.empty_like(sep)
    tok_start[0] = _LEAD
    tok_start[1:] = sep[:-1] + 1
    tok_len = sep - tok_start  # (K,)

    field_end = np.flatnonzero(kind != _COMMA)  # (F,) last token of every field
    field_ntok = np.diff(field_end, prepend=-1)  # (F,)
    line_last = np.flatnonzero(kind[field_end] == _NL)  # (L,) last field of every line
    n_lines = len(line_last)
    line_first = np.empty_like(line_last)
    line_first[0] = 0
    line_first[1:] = line_last[:-1] + 1
    n_fields_raw = line_last - line_first + 1  # (L,)
    # A trailing ";" leaves a last field of one empty token; so does a blank line.
    dropped = (field_ntok[line_last] == 1) & (tok_len[field_end[line_last]] == 0)
    n_fields = n_fields_raw - dropped  # (L,)
    nonblank = n_fields > 0
    field_line = np.repeat(np.arange(n_lines), n_fields_raw)  # (F,)
    field_index = np.arange(len(field_end)) - line_first[field_line]  # (F,) 0-based within its line
    kept = field_index < n_fields[field_line]
    bad_field = kept & np.where(field_index < N_HEADER, field_ntok != 1, field_ntok != len(OBJECT_PARTS))
    struct_bad = nonblank & (
        (n_fields < N_HEADER) | (np.bincount(field_line[bad_field], minlength=n_lines) > 0)
    )  # (L,)

    good = np.flatnonzero(nonblank & ~struct_bad)  # (G,) lines whose values are parsed
    n_good = len(good)
    header_tok = field_end[line_first[good][:, None] + np.arange(N_HEADER)]  # (G, 5)
    obj_field = np.flatnonzero(kept & (field_index >= N_HEADER))
    obj_field = obj_field[~struct_bad[field_line[obj_field]] & nonblank[field_line[obj_field]]]
    good_index = np.cumsum(nonblank & ~struct_bad) - 1  # (L,) line -> row in good
    obj_event = good_index[field_line[obj_field]]  # (M,)
    obj_last = field_end[obj_field]  # (M,) token of phi; code, E, pt, eta are the 4 before

    event_id, id_ok = _parse_ints(a, words, tok_start[header_tok[:, 0]], sep[header_tok[:, 0]])
    process, process_ok = _parse_process(a, tok_start[header_tok[:, 1]], tok_len[header_tok[:, 1]])
    # Numbers field by field (weight, MET, METphi, then E, pt, eta, phi), so each field is contiguous.
    obj_number_tok = obj_last + np.arange(-3, 1)[:, None]  # (4, M)
    number_tok = np.concatenate([header_tok[:, 2:].T.ravel(), obj_number_tok.ravel()])
    numbers, number_ok = _parse_floats(a, words, tok_start[number_tok], sep[number_tok])
    header_numbers = numbers[: 3 * n_good].reshape(3, n_good)  # (3, G)
    header_ok = np.logical_and.reduce(number_ok[: 3 * n_good].reshape(3, n_good), axis=0)
    obj_numbers = numbers[3 * n_good :].reshape(4, -1)  # (4, M)
    obj_ok = np.logical_and.reduce(number_ok[3 * n_good :].reshape(4, -1), axis=0)
    otype = _object_types(halves, tok_start[obj_last - 4], tok_len[obj_last - 4])  # (M,)

    event_bad = ~(id_ok & process_ok & header_ok)  # (G,)
    event_bad |= np.bincount(obj_event[~obj_ok | (otype < 0)], minlength=n_good) > 0
    line_bad = struct_bad.copy()
    line_bad[good[event_bad]] = True
    n_bad = int(np.count_nonzero(line_bad))
    if n_bad and fail:
        i = int(np.argmax(line_bad))
        begin = int(sep[field_end[line_last[i - 1]]]) + 1 if i > 0 else _LEAD
        end = int(sep[field_end[line_last[i]]])  # its newline
        raise _diagnose(raw[begin:end], f"{source}:{first_line + i}")

    if n_bad:
        keep = ~event_bad  # (G,)
        obj_keep = keep[obj_event]  # (M,)
        good, event_id, process = good[keep], event_id[keep], process[keep]
        header_numbers, obj_numbers = header_numbers[:, keep], obj_numbers[:, obj_keep]
        obj_event, otype = obj_event[obj_keep], otype[obj_keep]
        counts = np.bincount(obj_event, minlength=n_good)[keep]
    else:
        counts = np.bincount(obj_event, minlength=n_good)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    cols = _Columns(
        event_id=event_id,
        process=process,
        weight=header_numbers[0],
        met=header_numbers[1] / MEV_PER_GEV,
        met_phi=header_numbers[2],
        line=first_line + good,
        offsets=offsets,
        otype=otype,
        kin=(obj_numbers[0] / MEV_PER_GEV, obj_numbers[1] / MEV_PER_GEV, obj_numbers[2], obj_numbers[3]),
    )
    return cols, n_bad


def _parse_floats(
    a: np.ndarray, words: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Parse the tokens ``a[start:end]`` as float64.

    Plain decimals (``[+-]int[.frac]`` with at most 8 digits on either side of the dot and 15 in all)
    are parsed eight digits at a time: the dot is searched in the token's last 9 bytes; the digits
    before it are the last bytes of the 8-byte word that ends at the dot, those after it the last bytes
    of the word that ends at the token's end. The two integers give the decimal's digits as one exact
    integer, divided once by a power of ten; that division is correctly rounded (Clinger's fast path),
    so the value equals ``float(token)``. Every other token (exponents, ``nan``, longer decimals,
    garbage) goes through numpy's string conversion.

    Shapes:
        a: uint8 ``(B,)``, padded past the last token by at least ``MAX_NUMBER_LEN`` bytes;
        words: uint64 ``(B - 7,)``, the unaligned words of ``a``;
        start, end: ``(n,)``, where each token starts and ends (exclusive); every ``start`` is >= 16.
    Returns values float64 ``(n,)`` (NaN where invalid) and ok bool ``(n,)``.
    """
    length = end - start
    first = a[start]
    negative = first == ord("-")
    n_sign = negative | (first == ord("+"))
    last = words.take(end - 8)
    dot_bits = _zero_bytes(last ^ _ASCII_DOTS)  # 0x80 in every byte that is a dot
    dot_bits &= _KEEP_LAST[np.minimum(length, 8)]  # in this token
    dot_in_last = dot_bits != 0
    dot_bits &= -dot_bits  # the first dot
    dot = end - 8 + ((dot_bits >> np.uint64(7)) * _BYTE_INDEX >> np.uint64(56)).astype(np.int64)
    dot_before = ~dot_in_last & (length >= 9) & (a[end - 9] == ord("."))
    dot[dot_before] = end[dot_before] - 9
    has_dot = dot_in_last | dot_before
    int_end = np.where(has_dot, dot, end)
    n_int = int_end - start - n_sign
    n_frac = end - int_end - has_dot
    fast = (n_int >= 0) & (n_int <= 8) & (n_frac <= 8) & (n_int + n_frac >= 1) & (n_int + n_frac <= 15)
    np.clip(n_int, 0, 8, out=n_int)
    np.clip(n_frac, 0, 8, out=n_frac)
    int_part, int_ok = _eight_digits(words.take(int_end - 8), n_int)
    frac_part, frac_ok = _eight_digits(last, n_frac)
    fast &= int_ok
    fast &= frac_ok
    int_part *= _POW10_UINT[n_frac]
    int_part += frac_part
    values = int_part / _POW10_FLOAT[n_frac]
    values *= _SIGN[negative.view(np.uint8)]
    values[~fast] = np.nan
    slow = np.flatnonzero(~fast & (length > 0) & (length <= MAX_NUMBER_LEN))
    if len(slow):
        values[slow], fast[slow] = _convert(_gather(a, start[slow], length[slow]), np.float64)
    return values, fast


def _parse_ints(
    a: np.ndarray, words: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Parse the tokens ``a[start:end]`` as int64, like :func:`_parse_floats` (up to 16 digits fast).

    Returns values int64 ``(n,)`` (0 where invalid) and ok bool ``(n,)``.
    """
    first = a[start]
    negative = first == ord("-")
    n_digit = end - start - (negative | (first == ord("+")))
    fast = (n_digit >= 1) & (n_digit <= 16)
    np.clip(n_digit, 0, 16, out=n_digit)
    low, low_ok = _eight_digits(words[end - 8], np.minimum(n_digit, 8))
    high, high_ok = _eight_digits(words[end - 16], np.maximum(n_digit - 8, 0))
    fast &= low_ok & high_ok
    values = (high * np.uint64(10**8) + low).astype(np.int64)
    np.negative(values, out=values, where=negative)
    values[~fast] = 0
    length = end - start
    slow = np.flatnonzero(~fast & (length > 0) & (length <= MAX_NUMBER_LEN))
    if len(slow):
        values[slow], fast[slow] = _convert(_gather(a, start[slow], length[slow]), np.int64)
    return values, fast


def _eight_digits(word: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The integer in the last ``n`` bytes of each word (ASCII digits), and whether they are digits.

    Shapes: word uint64 ``(n,)``, n int ``(n,)`` in ``[0, 8]``; returns uint64 ``(n,)``, bool ``(n,)``.
    """
    keep = _KEEP_LAST[n]
    word = word & keep
    np.invert(keep, out=keep)
    keep &= _ASCII_ZEROS
    word |= keep  # ASCII zeros in the bytes not taken
    # Every byte must be 0x30..0x39: high nibble 3, and still 3 after adding 6.
    ok = (word & _HIGH_NIBBLES) == _ASCII_ZEROS
    keep = word + np.uint64(0x0606060606060606)
    keep &= _HIGH_NIBBLES
    ok &= keep == _ASCII_ZEROS
    value = word & np.uint64(0x0F0F0F0F0F0F0F0F)
    value *= np.uint64(2561)
    value >>= np.uint64(8)
    value &= np.uint64(0x00FF00FF00FF00FF)
    value *= np.uint64(6553601)
    value >>= np.uint64(16)
    value &= np.uint64(0x0000FFFF0000FFFF)
    value *= np.uint64(42949672960001)
    value >>= np.uint64(32)
    return value, ok


def _zero_bytes(word: np.ndarray) -> np.ndarray:
    """0x80 in every byte of ``word`` that is zero, 0 elsewhere (exact: no carries between bytes)."""
    bits = word & _LOW7
    bits += _LOW7
    bits |= word
    bits |= _LOW7
    np.invert(bits, out=bits)
    return bits


def _parse_process(a: np.ndarray, start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Process IDs as a str array ``(n,)`` and ok ``(n,)`` (non-empty, at most ``MAX_PROCESS_LEN``)."""
    ok = (length > 0) & (length <= MAX_PROCESS_LEN)
    text = _gather(a, start, np.where(ok, length, 0))
    try:
        return text.astype(str), ok
    except UnicodeDecodeError:
        return np.char.decode(text, "utf-8", "replace"), ok


def _object_types(halves: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Index in ``OBJECT_TYPES`` of every object code token, -1 where unknown; int8 ``(n,)``.

    ``halves`` are the unaligned little-endian uint16 of the block: the code's two bytes at once.
    """
    code = halves[start]
    code &= np.where(length == 1, np.uint16(0x00FF), np.uint16(0xFFFF))
    code[(length < 1) | (length > 2)] = 0  # not a code
    return _CODE_TYPE[code]


def _windows(a: np.ndarray, start: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` bytes from every ``start``: uint8 ``(n, width)`` (bytes past a token included)."""
    return np.lib.stride_tricks.sliding_window_view(a, width)[start]


def _gather(a: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Tokens ``a[start:start + length]`` as a fixed-width bytes array ``S{max length}`` ``(n,)``."""
    width = max(int(length.max(initial=0)), 1)
    win = _windows(a, start, width)
    win *= np.arange(width) < length[:, None]
    return win.view(f"S{width}").ravel()


def _convert(text: np.ndarray, dtype: type[np.generic]) -> tuple[np.ndarray, np.ndarray]:
    """``text.astype(dtype)`` with a per-element ok mask; bad elements are found by bisection."""
    try:
        return text.astype(dtype), np.ones(len(text), dtype=bool)
    except (ValueError, OverflowError):
        pass
    if len(text) <= 8:
        values = np.zeros(len(text), dtype=dtype)
        ok = np.zeros(len(text), dtype=bool)
        for i in range(len(text)):  # error path only: a few tokens, one of them bad
            try:
                values[i] = text[i : i + 1].astype(dtype)[0]
                ok[i] = True
            except (ValueError, OverflowError):
                pass
        return values, ok
    half = len(text) // 2
    v0, ok0 = _convert(text[:half], dtype)
    v1, ok1 = _convert(text[half:], dtype)
    return np.concatenate([v0, v1]), np.concatenate([ok0, ok1])


def _diagnose(line: bytes, where: str) -> DarkFlowError:
    """The error for one bad (normalized) line; mirrors the checks of :func:`_parse_block`."""
    text = line.decode("utf-8", "surrogateescape")
    fields = text.split(";")
    if fields[-1] == "":
        fields.pop()
    if len(fields) < N_HEADER:
        return InputError(
            f"{where}: expected at least {N_HEADER} fields '{';'.join(HEADER_NAMES)}' before the objects, "
            f"got {len(fields)} in {_quote(text)}"
        )
    for k, field in enumerate(fields):
        if k < N_HEADER and "," in field:
            return InputError(
                f"{where}: field {k + 1} ({HEADER_NAMES[k]}) {_quote(field)} must be a single value"
            )
        if k >= N_HEADER and field.count(",") != len(OBJECT_PARTS) - 1:
            return InputError(f"{where}: field {k + 1} {_quote(field)} must be '{','.join(OBJECT_PARTS)}'")
    raw = [f.encode("utf-8", "surrogateescape") for f in fields]
    if not _single(raw[0], np.int64):
        return InputError(f"{where}: field 1 (event ID) {_quote(fields[0])} must be an integer")
    if not 0 < len(raw[1]) <= MAX_PROCESS_LEN:
        return InputError(f"{where}: field 2 (process ID) must have 1 to {MAX_PROCESS_LEN} characters")
    for k in range(2, N_HEADER):
        if not _single(raw[k], np.float64):
            return InputError(
                f"{where}: field {k + 1} ({HEADER_NAMES[k]}) {_quote(fields[k])} is not a number"
            )
    for k in range(N_HEADER, len(fields)):
        code, *numbers = fields[k].split(",")
        if code not in DARKMACHINES_CODES:
            return DataError(
                f"{where}: field {k + 1}: unknown object code {_quote(code)}; valid codes: {_VALID_CODES}"
            )
        for name, number in zip(KINEMATIC_FIELDS, numbers, strict=True):
            if not _single(number.encode("utf-8", "surrogateescape"), np.float64):
                return InputError(
                    f"{where}: field {k + 1} {_quote(fields[k])}: {name} {_quote(number)} is not a number"
                )
    return InputError(f"{where}: malformed line {_quote(text)}")  # unreachable if the checks agree


def _single(token: bytes, dtype: type[np.generic]) -> bool:
    if not 0 < len(token) <= MAX_NUMBER_LEN:
        return False
    return bool(_convert(np.array([token]), dtype)[1][0])


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _normalize(buf: bytes) -> bytes:
    """Make line endings ``\\n`` and drop whitespace around separators and at line ends.

    ``buf`` ends with a newline. Whitespace inside a token (``"1 2"``) is kept, and makes it invalid.
    """
    if b"\r\n" in buf:
        buf = buf.replace(b"\r\n", b"\n")
    if not _has_whitespace(buf):
        return buf
    a = np.frombuffer(buf, dtype=np.uint8)
    space = (a == 32) | (a == 9) | (a == 13) | (a == 11) | (a == 12)
    at = np.flatnonzero(space)  # (S,)
    run_start = np.ones(len(at), dtype=bool)  # (S,) first byte of a run of whitespace
    run_start[1:] = np.diff(at) != 1
    first = at[run_start]  # (R,)
    last = at[np.append(run_start[1:], True)]  # (R,) the last byte, followed by a non-space
    before = a[np.maximum(first - 1, 0)]
    after = a[last + 1]
    drop_run = (first == 0) | (before == _SEMI) | (before == _COMMA) | (before == _NL)
    drop_run |= (after == _SEMI) | (after == _COMMA) | (after == _NL)
    keep = np.ones(len(a), dtype=bool)
    keep[at[drop_run[np.cumsum(run_start) - 1]]] = False
    return a[keep].tobytes()


def _has_whitespace(buf: bytes) -> bool:
    return any(c in buf for c in _WHITESPACE_BYTES)


def _line_lengths(buf: bytes) -> np.ndarray:
    """Length of every line of ``buf`` (which ends with a newline), newline excluded: int64 ``(L,)``."""
    newline = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == _NL)
    return np.diff(newline, prepend=-1) - 1


def _blocks(f: BinaryIO, block_bytes: int, source: str) -> Iterator[bytes]:
    """Complete lines of ``f``, ``block_bytes`` at a time, each block ending with a newline."""
    carry = b""
    while True:
        try:
            data = f.read(block_bytes)
        except OSError as exc:
            raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from exc
        if not data:
            if carry:
                yield carry + b"\n"
            return
        cut = data.rfind(b"\n")
        if cut < 0:
            carry += data
            continue
        yield carry + data[: cut + 1]
        carry = data[cut + 1 :]


def _check_file(path: Path, source: str) -> None:
    if not path.exists():
        raise InputError(f"{source}: no such file")
    if path.is_dir():
        raise InputError(f"{source}: is a directory, expected a Dark Machines CSV file")
    if not path.is_file():
        raise InputError(f"{source}: not a regular file (a FIFO, socket or device); expected a Dark Machines CSV file")


def _open(path: Path, source: str) -> BinaryIO:
    _check_file(path, source)
    try:
        return open(path, "rb")  # closed by the caller's with block
    except OSError as exc:
        raise InputError(f"{source}: cannot open: {exc.strerror or exc}") from exc


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
