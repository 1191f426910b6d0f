"""Reading a data file: each library's error said in one line (`reading`), and delimited text
tables read strictly (`text_table`): every line has the header's field count, every column a name
of its own, and no column becomes pandas' implicit index. Each refusal names the line."""

from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import gzip
import io
import itertools
import lzma
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

TEXT = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": "\t"}  # a text table's suffix and its delimiter
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip", ".zst")  # a text table's, after its own suffix: t.csv.gz


@contextlib.contextmanager
def reading(path: str) -> Iterator[None]:
    """A library's error while reading `path`, said in one line (reglab's own checks run outside it)."""
    try:
        yield
    except ImportError as e:
        raise ValueError(
            f"data.path={path}: reading it needs {e.name or 'pyarrow'}: pip install 'reglab[parquet]'"
        ) from None
    except OSError as e:  # permission denied, a device error: the system's own words, without the path again
        raise ValueError(f"data.path={path} cannot be read ({type(e).__name__}: {e.strerror or _flat(e)})") from None
    except (EOFError, ValueError) as e:
        raise ValueError(f"data.path={path} is unreadable ({type(e).__name__}: {_flat(e)})") from None


def _flat(error: BaseException) -> str:
    """An error message on one line: a library's may span several."""
    return " ".join(str(error).split())


def formats(path: str) -> tuple[str, str]:
    """(the format's suffix, the compression's or ""): `t.csv.gz` → (".csv", ".gz")."""
    suffixes = [s.lower() for s in Path(path).suffixes][-2:]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        return (suffixes[0] if len(suffixes) == 2 else ""), suffixes[-1]
    return (suffixes[-1] if suffixes else ""), ""


def decompressed(raw: bytes, path: str) -> bytes:
    """The bytes of a compressed file as pandas would read them (a .zip: the one file it holds)."""
    compression = formats(path)[1]
    if not compression:
        return raw
    try:
        if compression == ".zip":
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                names = [n for n in archive.namelist() if not n.endswith("/")]
                if len(names) != 1:
                    raise ValueError(f"data.path={path} holds {len(names)} files; a .zip table holds one, the table")
                return archive.read(names[0])
        if compression == ".zst":
            return _unzstd(raw, path)
        return {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}[compression](raw)
    except (OSError, EOFError, RuntimeError, NotImplementedError, zlib.error, lzma.LZMAError, zipfile.BadZipFile) as e:
        raise ValueError(f"data.path={path} is not {compression} data ({type(e).__name__}: {_flat(e)})") from None


def _unzstd(raw: bytes, path: str) -> bytes:
    try:
        import zstandard  # not a dependency: Python reads .zst itself only from 3.14 on
    except ImportError:
        raise ValueError(f"data.path={path}: reading .zst needs the zstandard module: pip install zstandard") from None
    try:
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    except zstandard.ZstdError as e:
        raise ValueError(f"data.path={path} is not .zst data ({_flat(e)})") from None


def text_table(raw: bytes, path: str, sep: str | None = None, encoding: str = "utf-8") -> pd.DataFrame:
    """The delimited table `raw` (the bytes of the file at `path`, decompressed), decoded with
    `encoding`, split at `sep` or at the delimiter sniffed from its first lines, and read strictly:
    every row has the header's fields, and no column becomes the index (pandas makes the first
    fields of longer rows the index, and names the data by the rest)."""
    text = _decoded(raw, path, encoding)
    sep = _delimiter(text, sep, TEXT.get(formats(path)[0], ","))
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    header: list[str] | None = None
    line = top = 1  # where the next record starts, and the header's line (1-based)
    try:
        for fields in reader:
            if fields and header is None:
                header, top = fields, line
                _check_header(header, top, sep, path)
            elif fields and header is not None and len(fields) != len(header):
                _refuse_fields(fields, len(header), line, top, sep, path)
            line = reader.line_num + 1
    except csv.Error as e:  # a field past Python's size limit, a stray carriage return
        raise ValueError(f"data.path={path}: line {line} is unreadable ({e})") from None
    with reading(path):
        return pd.read_csv(io.StringIO(text), sep=sep, index_col=False)


def _decoded(raw: bytes, path: str, encoding: str) -> str:
    """`raw` as text; a byte the encoding does not know is said with its line (UTF-8: a BOM is no field)."""
    try:
        utf8 = codecs.lookup(encoding).name == "utf-8"
        return raw.decode("utf-8-sig" if utf8 else encoding)
    except LookupError:  # no codec of that name, or one of bytes, not text (base64)
        raise ValueError(
            f"data.encoding={encoding!r} is not a text encoding Python knows; use one such as utf-8, latin-1, "
            "cp1252 or utf-16"
        ) from None
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        where = f"line {line} holds byte 0x{raw[e.start : e.start + 1].hex()}"
        if utf8:
            raise ValueError(
                f"data.path={path} is not UTF-8 text ({where}); the file must be UTF-8, or set "
                "data.encoding to its encoding (data.encoding=latin-1, cp1252, utf-16, ...)"
            ) from None
        raise ValueError(
            f"data.path={path} is not {encoding} text ({where}); set data.encoding to its encoding"
        ) from None


def _delimiter(text: str, sep: str | None, default: str) -> str:
    """`sep` (`\\t` as written on a command line: a tab), or the delimiter csv.Sniffer finds in the
    first lines among , tab ; |, or else the suffix's own (`default`): the field counts then say which line differs."""
    if sep is not None:
        sep = "\t" if sep == "\\t" else sep
        if not isinstance(sep, str) or len(sep) != 1 or sep in '"\r\n':
            raise ValueError(
                f"data.sep={sep!r} must be one character, such as ',', ';', '|' or '\\t' (a tab); null sniffs it"
            )
        return sep
    sample = "".join(itertools.islice(io.StringIO(text), 50))
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:  # one column, or lines of other field counts
        return default


def _refuse_fields(fields: list[str], width: int, line: int, top: int, sep: str, path: str) -> None:
    said = f"data.path={path}: line {line} has {_fields(len(fields))} but the header (line {top}) has {width}"
    if len(fields) == width + 1 and fields[-1] == "":
        raise ValueError(f"{said}: it ends in {sep!r} with nothing after it; remove that trailing {sep!r}")
    raise ValueError(
        f"{said} (split at {sep!r}; data.sep sets the delimiter); every line needs one field per column of the header"
    )


def _check_header(header: list[str], line: int, sep: str, path: str) -> None:
    """Each column has a name of its own: pandas would call an empty one `Unnamed: 3` and a second `a` `a.1`."""
    seen: set[str] = set()
    for i, name in enumerate(header):
        if not name.strip():
            end = f": it ends in {sep!r}; remove it" if i == len(header) - 1 else ""
            raise ValueError(f"data.path={path}: field {i + 1} of the header (line {line}) is empty{end}")
        if name in seen:
            raise ValueError(f"data.path={path}: the header (line {line}) names column {name!r} twice")
        seen.add(name)


def _fields(n: int) -> str:
    return f"{n} field" + ("s" if n != 1 else "")
