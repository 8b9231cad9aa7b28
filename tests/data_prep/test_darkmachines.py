"""Tests of the Dark Machines CSV reader against a deliberately simple line-by-line parser."""

from __future__ import annotations

import gc
import math
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from darkflow.data_prep.chunk import DARKMACHINES_CODES, KINEMATIC_FIELDS, OBJECT_TYPES, EventChunk
from darkflow.data_prep.darkmachines import DarkMachinesReader
from darkflow.errors import ConfigError, DataError, InputError

CODES = list(DARKMACHINES_CODES)
PROCESSES = ["ttbar", "z_jets", "glgl1400_neutralino1100", "wjets", "4top"]
VALID_CODES = "j, b, e+, e-, m+, m-, g"


# --------------------------------------------------------------------------------------------------
# The reference: one line at a time, plain Python.


def reference_read(path: Path) -> list[tuple]:
    """Every event of a valid file as ``(line, event_id, process, weight, met, met_phi, objects)``."""
    events = []
    text = path.read_bytes().decode("utf-8")
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        fields = [field.strip() for field in line.split(";")]
        if fields[-1] == "":
            fields.pop()
        objects: dict[str, list[tuple[float, ...]]] = {name: [] for name in OBJECT_TYPES}
        for field in fields[5:]:
            code, e, pt, eta, phi = (part.strip() for part in field.split(","))
            objects[DARKMACHINES_CODES[code]].append(
                (float(e) / 1000, float(pt) / 1000, float(eta), float(phi))
            )
        events.append(
            (
                number,
                int(fields[0]),
                fields[1],
                float(fields[2]),
                float(fields[3]) / 1000,
                float(fields[4]),
                objects,
            )
        )
    return events


def flatten(chunks: list[EventChunk]) -> list[tuple]:
    """The reader's chunks in the reference's form."""
    events = []
    for chunk in chunks:
        objects = {name: ak.to_list(chunk.objects[name]) for name in OBJECT_TYPES}
        for i in range(len(chunk)):
            events.append(
                (
                    int(chunk.extra["line"][i]),
                    int(chunk.event_id[i]),
                    str(chunk.process[i]),
                    float(chunk.weight[i]),
                    float(chunk.met[i]),
                    float(chunk.met_phi[i]),
                    {
                        name: [tuple(obj[f] for f in KINEMATIC_FIELDS) for obj in objects[name][i]]
                        for name in OBJECT_TYPES
                    },
                )
            )
    return events


def same_float(x: float, y: float) -> bool:
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return x == y and math.copysign(1.0, x) == math.copysign(1.0, y)


def assert_same_events(got: list[tuple], want: list[tuple]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[:3] == w[:3], (g[:3], w[:3])
        assert all(same_float(a, b) for a, b in zip(g[3:6], w[3:6], strict=True)), (g, w)
        for name in OBJECT_TYPES:
            assert len(g[6][name]) == len(w[6][name]), (w[0], name)
            for a, b in zip(g[6][name], w[6][name], strict=True):
                assert all(same_float(x, y) for x, y in zip(a, b, strict=True)), (w[0], name, a, b)


def read_all(path: Path, **kwargs) -> tuple[list[EventChunk], DarkMachinesReader]:
    block_bytes = kwargs.pop("block_bytes", None)
    reader = DarkMachinesReader(path, **kwargs)
    if block_bytes is not None:
        reader.block_bytes = block_bytes
    return list(reader), reader


# --------------------------------------------------------------------------------------------------
# Random files.


def random_number(rng: np.random.Generator, scale: float) -> str:
    x = float(rng.normal()) * scale
    style = int(rng.integers(8))
    if style == 0:
        return repr(x)  # 17 significant digits: numpy's conversion
    if style == 1:
        return f"{x:.3f}"
    if style == 2:
        return str(int(x))
    if style == 3:
        return f"{x:e}"
    if style == 4:
        return f"{x:+.2f}"
    return f"{x:g}"  # what the challenge files hold; large values get an exponent


def random_line(rng: np.random.Generator, event_id: int, spaces: bool) -> str:
    fields = [
        str(event_id),
        PROCESSES[int(rng.integers(len(PROCESSES)))],
        random_number(rng, 2.0),
        random_number(rng, 1e5),
        random_number(rng, 3.0),
    ]
    for _ in range(int(rng.integers(0, 16))):
        code = CODES[int(rng.integers(len(CODES)))]
        parts = [
            code,
            random_number(rng, 5e5),
            random_number(rng, 1e5),
            random_number(rng, 2.5),
            random_number(rng, 3.0),
        ]
        fields.append(",".join(f" {p}  " if spaces and rng.random() < 0.3 else p for p in parts))
    if spaces:
        fields = [f"  {f}\t" if rng.random() < 0.3 else f for f in fields]
    line = ";".join(fields)
    return line + ";" if rng.random() < 0.7 else line


def write_random_file(
    path: Path,
    n_events: int,
    seed: int,
    *,
    blank: float = 0.0,
    spaces: bool = False,
    newline: str = "\n",
    final_newline: bool = True,
) -> Path:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n_events):
        while rng.random() < blank:
            lines.append(["", "   ", "\t"][int(rng.integers(3))])
        lines.append(random_line(rng, int(rng.integers(-(2**40), 2**62)) if i % 5 == 0 else i, spaces))
    text = newline.join(lines) + (newline if final_newline else "")
    path.write_bytes(text.encode())
    return path


@pytest.fixture(scope="module")
def random_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dm") / "random.csv"
    return write_random_file(path, 300, seed=1, blank=0.05, spaces=True)


# --------------------------------------------------------------------------------------------------
# Agreement with the reference.


@pytest.mark.parametrize("chunk_size", [1, 7, 10**6])
@pytest.mark.parametrize("block_bytes", [64, 1000, 1 << 20])
def test_random_file_matches_reference(random_file: Path, chunk_size: int, block_bytes: int) -> None:
    chunks, reader = read_all(random_file, chunk_size=chunk_size, block_bytes=block_bytes)
    want = reference_read(random_file)
    assert_same_events(flatten(chunks), want)
    assert [len(c) for c in chunks[:-1]] == [chunk_size] * (len(chunks) - 1)
    assert 1 <= len(chunks[-1]) <= chunk_size
    assert reader.n_read == len(want) == 300
    assert reader.n_skipped == 0
    assert reader.count_events() == 300


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_random_files_plain(tmp_path: Path, seed: int) -> None:
    path = write_random_file(tmp_path / "plain.csv", 200, seed=seed)
    chunks, _ = read_all(path, chunk_size=50)
    assert_same_events(flatten(chunks), reference_read(path))


def test_chunk_contract(random_file: Path) -> None:
    chunk = next(iter(DarkMachinesReader(random_file, chunk_size=40)))
    assert isinstance(chunk, EventChunk)
    assert len(chunk) == 40
    assert set(chunk.objects) == set(OBJECT_TYPES)
    for name in OBJECT_TYPES:
        array = chunk.objects[name]
        assert len(array) == 40
        assert str(array.type) == "40 * var * {E: float64, pt: float64, eta: float64, phi: float64}"
    assert chunk.met.dtype == np.float64 and chunk.met.shape == (40,)
    assert chunk.met_phi.dtype == np.float64 and chunk.weight.dtype == np.float64
    assert chunk.event_id.dtype == np.int64
    assert chunk.process.dtype.kind == "U"
    assert chunk.source == str(random_file)
    assert chunk.first_line == int(chunk.extra["line"][0])
    assert chunk.extra["line"].dtype == np.int64


def test_reader_iterates_twice(random_file: Path) -> None:
    reader = DarkMachinesReader(random_file, chunk_size=64)
    first, second = flatten(list(reader)), flatten(list(reader))
    assert_same_events(first, second)
    assert reader.n_read == 300


def test_stopping_early_closes_the_file(random_file: Path) -> None:
    iterator = iter(DarkMachinesReader(random_file, chunk_size=10))
    assert len(next(iterator)) == 10
    del iterator
    gc.collect()  # a ResourceWarning here would fail the test (warnings are errors)


# --------------------------------------------------------------------------------------------------
# start / stop.


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_start_stop_ranges_concatenate_to_the_whole(random_file: Path, chunk_size: int) -> None:
    whole = flatten(list(DarkMachinesReader(random_file)))
    n = DarkMachinesReader(random_file).count_events()
    rng = np.random.default_rng(5)
    for _ in range(2 if chunk_size == 1 else 4):
        cuts = sorted(int(c) for c in rng.integers(0, n + 1, size=3))
        bounds = [0, *cuts, None]
        parts: list[tuple] = []
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            reader = DarkMachinesReader(random_file, chunk_size=chunk_size, start=start, stop=stop)
            reader.block_bytes = 200
            got = flatten(list(reader))
            assert len(got) == (n if stop is None else stop) - start
            assert reader.n_read == len(got)
            parts += got
        assert_same_events(parts, whole)


def test_start_stop_index_non_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("\n".join(f"{i};p;1;1;0;" if i % 2 else "" for i in range(20)) + "\n")
    chunks, _ = read_all(path, start=2, stop=5)
    ids = np.concatenate([c.event_id for c in chunks])
    assert ids.tolist() == [5, 7, 9]
    assert np.concatenate([c.extra["line"] for c in chunks]).tolist() == [6, 8, 10]


def test_start_stop_outside_the_file(random_file: Path) -> None:
    assert list(DarkMachinesReader(random_file, start=300)) == []
    assert list(DarkMachinesReader(random_file, start=1000, stop=2000)) == []
    assert list(DarkMachinesReader(random_file, start=10, stop=10)) == []
    got = flatten(list(DarkMachinesReader(random_file, start=295, stop=10**9)))
    assert len(got) == 5


def test_start_stop_ranges_with_skipped_lines(tmp_path: Path) -> None:
    lines = [f"{i};p;1;1000;0;j,1,2,3,4;" if i % 3 else f"{i};p;1;1000;0;q,1,2,3,4;" for i in range(30)]
    path = tmp_path / "e.csv"
    path.write_text("\n".join(lines) + "\n")
    whole = flatten(list(DarkMachinesReader(path, on_error="skip")))
    parts: list[tuple] = []
    skipped = 0
    for start, stop in [(0, 4), (4, 17), (17, None)]:
        reader = DarkMachinesReader(path, on_error="skip", start=start, stop=stop, chunk_size=3)
        parts += flatten(list(reader))
        skipped += reader.n_skipped
    assert_same_events(parts, whole)
    assert skipped == 10
    assert len(whole) == 20


# --------------------------------------------------------------------------------------------------
# Format details.


def test_example_line_and_units(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "1;ttbar;1;62803.5;-2.17475;j,904116,120000,-1.2,0.5;b,320000,50000,0.3,-2.1;e-,40000,35000,0.1,1.0;\n"
    )
    (chunk,) = list(DarkMachinesReader(path))
    assert chunk.event_id.tolist() == [1]
    assert chunk.process.tolist() == ["ttbar"]
    assert chunk.weight.tolist() == [1.0]
    assert chunk.met.tolist() == [62803.5 / 1000]
    assert chunk.met_phi.tolist() == [-2.17475]
    assert ak.to_list(chunk.objects["jet"]) == [[{"E": 904.116, "pt": 120.0, "eta": -1.2, "phi": 0.5}]]
    assert ak.to_list(chunk.objects["bjet"]) == [[{"E": 320.0, "pt": 50.0, "eta": 0.3, "phi": -2.1}]]
    assert ak.to_list(chunk.objects["eminus"]) == [[{"E": 40.0, "pt": 35.0, "eta": 0.1, "phi": 1.0}]]
    for name in ("eplus", "muplus", "muminus", "photon"):
        assert ak.to_list(chunk.objects[name]) == [[]]
    assert chunk.first_line == 1


def test_every_object_code(tmp_path: Path) -> None:
    objects = ";".join(
        f"{code},{1000 * (k + 1)},{500 * (k + 1)},0.{k},-0.{k}" for k, code in enumerate(CODES)
    )
    path = tmp_path / "codes.csv"
    path.write_text(f"7;sig;0.5;1000;1;{objects};j,9000,8000,1,2;\n")
    (chunk,) = list(DarkMachinesReader(path))
    for k, code in enumerate(CODES):
        name = DARKMACHINES_CODES[code]
        got = ak.to_list(chunk.objects[name])[0]
        first = {"E": float(k + 1), "pt": 0.5 * (k + 1), "eta": float(f"0.{k}"), "phi": -float(f"0.{k}")}
        assert got[0] == first
    # A second jet, after all the others in the line: still in file order within the jets.
    assert [o["E"] for o in ak.to_list(chunk.objects["jet"])[0]] == [1.0, 9.0]


def test_trailing_semicolon_is_optional(tmp_path: Path) -> None:
    with_semicolon = tmp_path / "a.csv"
    without = tmp_path / "b.csv"
    with_semicolon.write_text("1;p;1;2;3;j,1,2,3,4;\n2;p;1;2;3;\n")
    without.write_text("1;p;1;2;3;j,1,2,3,4\n2;p;1;2;3\n")
    assert_same_events(
        flatten(list(DarkMachinesReader(with_semicolon))), flatten(list(DarkMachinesReader(without)))
    )


def test_crlf_blank_lines_and_missing_final_newline(tmp_path: Path) -> None:
    unix = write_random_file(tmp_path / "unix.csv", 120, seed=7, blank=0.1)
    dos = write_random_file(tmp_path / "dos.csv", 120, seed=7, blank=0.1, newline="\r\n", final_newline=False)
    want = reference_read(unix)
    assert_same_events(flatten(list(DarkMachinesReader(dos, chunk_size=13))), want)
    assert_same_events(reference_read(dos), want)  # line numbers too
    assert DarkMachinesReader(dos).count_events() == 120
    reader = DarkMachinesReader(dos)
    reader.block_bytes = 100
    assert reader.count_events() == 120
    assert_same_events(flatten(list(reader)), want)


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("\n  \n1;p;1;2;3;\n\n\t\n2;p;1;2;3;\n3;p;1;2;3;")
    chunks, _ = read_all(path, chunk_size=2)
    assert [c.first_line for c in chunks] == [3, 7]
    assert np.concatenate([c.extra["line"] for c in chunks]).tolist() == [3, 6, 7]
    assert DarkMachinesReader(path).count_events() == 3


def test_zero_object_events(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("1;p;1;2;3;\n2;p;1;2;3\n3;p;1;2;3;g,1,2,3,4;\n4;p;1;2;3;\n")
    (chunk,) = list(DarkMachinesReader(path))
    assert ak.num(chunk.objects["photon"]).tolist() == [0, 0, 1, 0]
    for name in OBJECT_TYPES:
        if name != "photon":
            assert ak.num(chunk.objects[name]).tolist() == [0, 0, 0, 0]


def test_file_of_zero_object_events(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("".join(f"{i};p;1;2;3;\n" for i in range(10)))
    chunks, _ = read_all(path, chunk_size=4)
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert all(len(c.objects["jet"].layout.content) == 0 for c in chunks)


NUMBERS = [
    "0", "-0", "+5", ".5", "5.", "-.5", "0.1", "-2.17475", "904116", "12345678.1234567", "99999999.9999999",
    "1.12345678", "1.123456789", "123456789", "9007199254740993", "0.000000001234", "1e5", "1E-3",
    "-1.5e+06", "2.5e-300", "1e400", "nan", "NaN", "inf", "-inf", "1_000", "00012.50",
]  # fmt: skip


def test_numbers_equal_python_float(tmp_path: Path) -> None:
    objects = ";".join(f"j,{x},{x},{x},{x}" for x in NUMBERS)
    path = tmp_path / "n.csv"
    path.write_text("".join(f"{i};p;{x};{x};{x};{objects};\n" for i, x in enumerate(NUMBERS)))
    (chunk,) = list(DarkMachinesReader(path))
    want = np.array([float(x) for x in NUMBERS])
    np.testing.assert_array_equal(chunk.weight, want)
    np.testing.assert_array_equal(chunk.met, want / 1000)
    np.testing.assert_array_equal(chunk.met_phi, want)
    jets = chunk.objects["jet"]
    for field, scale in [("E", 1000), ("pt", 1000), ("eta", 1), ("phi", 1)]:
        np.testing.assert_array_equal(ak.to_numpy(jets[field][0]), want / scale)
    assert np.signbit(chunk.weight[1]) and np.signbit(ak.to_numpy(jets["eta"][0])[1])


def test_many_decimals_equal_python_float(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    numbers = []
    while len(numbers) < 8000:
        n_int, n_frac = (int(n) for n in rng.integers(0, 10, size=2))
        digits = "".join(str(int(d)) for d in rng.integers(0, 10, size=n_int + n_frac))
        sign = ["", "-", "+"][int(rng.integers(3))]
        dot = "." if n_frac or rng.random() < 0.3 else ""
        if n_int + n_frac:
            numbers.append(f"{sign}{digits[:n_int]}{dot}{digits[n_int:]}")
    rows = np.array(numbers).reshape(-1, 40, 4)  # 50 lines of 40 objects
    path = tmp_path / "d.csv"
    path.write_text(
        "".join(
            f"{i};p;1;2;3;" + ";".join("j," + ",".join(o) for o in row) + ";\n" for i, row in enumerate(rows)
        )
    )
    (chunk,) = list(DarkMachinesReader(path))
    jets = chunk.objects["jet"]
    got = np.stack([ak.to_numpy(ak.flatten(jets[f])) for f in KINEMATIC_FIELDS], axis=1)  # (M, 4)
    want = np.array([float(x) for x in numbers]).reshape(-1, 4) / [1000, 1000, 1, 1]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_skipping_every_line(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("x\n1;p;a;1;1\n1;p;1;1;1;q,1,2,3,4\n")
    reader = DarkMachinesReader(path, on_error="skip")
    assert list(reader) == []
    assert (reader.n_skipped, reader.n_read, reader.count_events()) == (3, 0, 3)


def test_nan_and_inf_pass_through(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("1;p;nan;inf;-inf;j,nan,1,inf,2;\n")
    (chunk,) = list(DarkMachinesReader(path))
    assert math.isnan(chunk.weight[0]) and chunk.met[0] == math.inf and chunk.met_phi[0] == -math.inf
    jet = ak.to_list(chunk.objects["jet"])[0][0]
    assert math.isnan(jet["E"]) and jet["eta"] == math.inf


def test_event_ids_and_process_names(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    ids = [0, -5, 123456789012, 2**63 - 1, -(2**63), 1234567890123456, 12345678901234567]
    path.write_bytes("".join(f"{i};proc_é{k};1;2;3;\n" for k, i in enumerate(ids)).encode())
    (chunk,) = list(DarkMachinesReader(path))
    assert chunk.event_id.tolist() == ids
    assert chunk.process.tolist() == [f"proc_é{k}" for k in range(len(ids))]


def test_line_longer_than_a_block(tmp_path: Path) -> None:
    objects = ";".join(f"j,{k}.5,{k},0.{k},1.{k}" for k in range(2000))
    path = tmp_path / "e.csv"
    path.write_text(f"1;p;1;2;3;{objects};\n2;p;1;2;3;\n")
    chunks, _ = read_all(path, block_bytes=1024)
    assert_same_events(flatten(chunks), reference_read(path))
    assert ak.num(chunks[0].objects["jet"]).tolist() == [2000, 0]


# --------------------------------------------------------------------------------------------------
# Errors.


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.csv"):
        DarkMachinesReader(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="directory"):
        DarkMachinesReader(tmp_path)


@pytest.mark.parametrize("text", ["", "\n\n", "  \r\n\t\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(text)
    reader = DarkMachinesReader(path)
    assert reader.count_events() == 0
    with pytest.raises(InputError, match="no events"):
        list(reader)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("1;p;1;2", "expected at least 5 fields"),
        ("1;p;1;2;3;j,1,2", "field 6 'j,1,2' must be 'code,E,pt,eta,phi'"),
        ("1;p;1;2;3;j,1,2,3,4;j,1,2,3,4,5;", "field 7 'j,1,2,3,4,5' must be 'code,E,pt,eta,phi'"),
        ("1;p;1;2;3;;", "field 6 '' must be 'code,E,pt,eta,phi'"),
        ("1,2;p;1;2;3;", "field 1 (event ID) '1,2' must be a single value"),
        ("1.5;p;1;2;3;", "field 1 (event ID) '1.5' must be an integer"),
        ("x;p;1;2;3;", "field 1 (event ID) 'x' must be an integer"),
        ("1;;1;2;3;", "field 2 (process ID) must have 1 to"),
        ("1;p;one;2;3;", "field 3 (event weight) 'one' is not a number"),
        ("1;p;1;2 3;3;", "field 4 (MET) '2 3' is not a number"),
        ("1;p;1;2;;", "field 5 (METphi) '' is not a number"),
        ("1;p;1;2;3;j,1,2,x,4;", "field 6 'j,1,2,x,4': eta 'x' is not a number"),
        ("1;p;1;2;3;j,1,2,3,4;b,1.2.3,2,3,4", "field 7 'b,1.2.3,2,3,4': E '1.2.3' is not a number"),
        ("1;p;1;2;3;j,1,2,3,;", "field 6 'j,1,2,3,': phi '' is not a number"),
    ],
)
def test_malformed_line(tmp_path: Path, bad: str, message: str) -> None:
    path = tmp_path / "events.csv"
    path.write_text(f"1;p;1;2;3;\n\n2;p;1;2;3;j,1,2,3,4;\n{bad}\n3;p;1;2;3;\n")
    with pytest.raises(InputError) as info:
        list(DarkMachinesReader(path))
    assert not isinstance(info.value, DataError)
    text = str(info.value)
    assert text.startswith(f"{path}:4: "), text
    assert message in text, text
    assert "\n" not in text

    reader = DarkMachinesReader(path, on_error="skip")
    got = flatten(list(reader))
    assert [e[1] for e in got] == [1, 2, 3]
    assert reader.n_skipped == 1 and reader.n_read == 3


@pytest.mark.parametrize("code", ["q", "J", "e", "mu", "e++", "", " "])
def test_unknown_object_code(tmp_path: Path, code: str) -> None:
    path = tmp_path / "events.csv"
    path.write_text(f"1;p;1;2;3;\n2;p;1;2;3;j,1,2,3,4;{code},1,2,3,4;\n")
    with pytest.raises(DataError) as info:
        list(DarkMachinesReader(path))
    text = str(info.value)
    assert text.startswith(f"{path}:2: field 7: unknown object code {code.strip()!r}"), text
    assert f"valid codes: {VALID_CODES}" in text
    reader = DarkMachinesReader(path, on_error="skip")
    assert [len(c) for c in reader] == [1]
    assert reader.n_skipped == 1


def test_first_bad_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    lines = [f"{i};p;1;2;3;j,1,2,3,4;" for i in range(50)]
    lines[17] = "17;p;1;2;3;j,1,2;"
    lines[30] = "30;p;1;2;3;z,1,2,3,4;"
    path.write_text("\n".join(lines) + "\n")
    for block_bytes in (64, 1 << 20):
        reader = DarkMachinesReader(path, chunk_size=5)
        reader.block_bytes = block_bytes
        with pytest.raises(InputError, match=r":18: field 6 'j,1,2'"):
            list(reader)
    lines[17] = "17;p;1;2;3;j,1,2,3,4;"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r":31: field 6: unknown object code 'z'; valid codes: j, b"):
        list(DarkMachinesReader(path))


def test_skip_counts_on_a_random_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    good_lines = [random_line(rng, i, spaces=False) for i in range(400)]
    corrupt = [
        "{};p;1;2",
        "{};p;1;2;3;j,1,2;",
        "{};p;1;2;3;j,1,2,3,4;x,1,2,3,4;",
        "{};p;1;2;3;g,1,two,3,4;",
        "{}.5;p;1;2;3;",
        "{};;1;2;3;",
    ]
    lines, bad = [], 0
    for i, line in enumerate(good_lines):
        if rng.random() < 0.25:
            lines.append(corrupt[int(rng.integers(len(corrupt)))].format(10_000 + i))
            bad += 1
        lines.append(line)
    path = tmp_path / "e.csv"
    path.write_text("\n".join(lines) + "\n")
    clean = tmp_path / "clean.csv"
    clean.write_text("\n".join(good_lines) + "\n")
    reader = DarkMachinesReader(path, on_error="skip", chunk_size=33)
    got = flatten(list(reader))
    want = reference_read(clean)
    assert reader.n_skipped == bad > 50
    assert reader.n_read == len(want) == 400
    assert_same_events([(0, *g[1:]) for g in got], [(0, *w[1:]) for w in want])  # line numbers differ


@pytest.mark.parametrize(
    "kwargs",
    [
        {"chunk_size": 0},
        {"chunk_size": 1.5},
        {"on_error": "ignore"},
        {"start": -1},
        {"start": 5, "stop": 4},
        {"stop": True},
    ],
)
def test_bad_arguments(random_file: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        DarkMachinesReader(random_file, **kwargs)


# --------------------------------------------------------------------------------------------------
# Throughput.



# --------------------------------------------------------------------------------------------------
# Units: a file written in GeV where the format says MeV gets a warning with the evidence.


def physics_csv(path: Path, n: int, scale: float, seed: int = 0, objects: bool = True) -> Path:
    """Events with jets and leptons of realistic pT (20 to 500 GeV) and MET, written times ``scale``
    (1000: MeV as the format wants; 1: GeV by mistake)."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        fields = [str(i), "ttbar", "1", f"{rng.exponential(60) * scale:.6g}", f"{rng.uniform(-3, 3):.4f}"]
        for _ in range(int(rng.integers(1, 6)) if objects else 0):
            pt = rng.uniform(20, 500)
            eta = rng.uniform(-2.5, 2.5)
            code = CODES[int(rng.integers(len(CODES)))]
            fields.append(f"{code},{pt * math.cosh(eta) * scale:.6g},{pt * scale:.6g},{eta:.4f},{rng.uniform(-3, 3):.4f}")
        lines.append(";".join(fields) + ";")
    path.write_text("\n".join(lines) + "\n")
    return path


def written_values(path: Path) -> tuple[list[float], list[float], list[float]]:
    """Object E, object pT and MET as written, parsed line by line."""
    energy, pt, met = [], [], []
    for line in path.read_text().splitlines():
        fields = [f for f in line.split(";") if f]
        met.append(float(fields[3]))
        for field in fields[5:]:
            _, e, p, _, _ = field.split(",")
            energy.append(float(e))
            pt.append(float(p))
    return energy, pt, met


def test_gev_values_get_a_warning_with_the_evidence(tmp_path: Path) -> None:
    path = physics_csv(tmp_path / "gev.csv", 300, scale=1.0)
    warning = DarkMachinesReader(path).unit_warning()
    energy, pt, met = written_values(path)
    assert warning is not None and "\n" not in warning
    assert warning.startswith(f"{path}: the values look like GeV, but the Dark Machines CSV format is in MeV")
    assert f"in the first 300 events the median object E is {np.median(energy):.4g} and pT {np.median(pt):.4g}" \
        in warning
    assert f"the median MET is {np.median(met):.4g} (as written)" in warning
    below = sum(p / 1000 < 15 for p in pt) / len(pt)
    assert below == 1.0 and f"100% of the {len(pt)} objects fall below 15 GeV" in warning
    assert "multiply E, pT and MET by 1000" in warning


def test_mev_values_and_files_without_evidence_get_none(tmp_path: Path) -> None:
    assert DarkMachinesReader(physics_csv(tmp_path / "mev.csv", 300, scale=1000.0)).unit_warning() is None
    assert DarkMachinesReader(physics_csv(tmp_path / "mev0.csv", 50, 1000.0, objects=False)).unit_warning() is None
    (tmp_path / "empty.csv").write_text("\n")
    assert DarkMachinesReader(tmp_path / "empty.csv").unit_warning() is None
    (tmp_path / "bad.csv").write_text("1;ttbar;1;not a number;0;\n")
    assert DarkMachinesReader(tmp_path / "bad.csv").unit_warning() is None


def test_gev_met_without_objects_is_judged_on_met(tmp_path: Path) -> None:
    path = physics_csv(tmp_path / "gev0.csv", 80, scale=1.0, objects=False)
    warning = DarkMachinesReader(path).unit_warning()
    _, _, met = written_values(path)
    assert warning is not None and f"the median MET is {np.median(met):.4g} (as written)" in warning
    assert "no event has objects" in warning


def test_unit_check_reads_only_the_first_events(tmp_path: Path) -> None:
    path = physics_csv(tmp_path / "mixed.csv", 120, scale=1000.0)
    gev = physics_csv(tmp_path / "tail.csv", 120, scale=1.0, seed=1)
    path.write_text(path.read_text() + gev.read_text())
    assert DarkMachinesReader(path).unit_warning(events=100) is None
    assert "in the first 100 events" in DarkMachinesReader(path, start=130).unit_warning(events=100)


def test_prepare_prints_the_warning_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from darkflow.cli import main

    path = physics_csv(tmp_path / "gev.csv", 200, scale=1.0)
    code = main(["prepare", str(path), "--out", str(tmp_path / "gev.h5"), "-q"])
    lines = capsys.readouterr().err.strip().splitlines()
    warnings = [line for line in lines if "look like GeV" in line]
    assert len(warnings) == 1 and warnings[0].startswith("darkflow prepare: warning: ") and "100% of the" in warnings[0]
    assert code == 0 and (tmp_path / "gev.h5").is_file()  # a warning, not an error: the user decides
    assert main(["prepare", str(physics_csv(tmp_path / "mev.csv", 200, 1000.0)), "--out", str(tmp_path / "mev.h5"),
                 "-q"]) == 0
    assert "look like GeV" not in capsys.readouterr().err


def test_a_fifo_is_refused(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(InputError, match="not a regular file"):
        DarkMachinesReader(tmp_path / "pipe.csv")
