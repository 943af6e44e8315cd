#!/usr/bin/env python3
"""Regenerate tests/data/safetensors: small hand-crafted malformed (and a few valid) safetensors
files, and the README.md that lists them with the error each must produce.

Standard library only. Usage (from anywhere):

    python3 tools/make_bad_safetensors.py [output_dir]

The default output directory is tests/data/safetensors next to this script's parent directory.
The output is deterministic; tests/test_safetensors.cpp holds the same expectations and fails if a
file in the directory is not covered.

Format reminder (https://github.com/huggingface/safetensors#format):
    u64 little-endian N | N bytes of UTF-8 JSON header | data buffer
"""

import os
import struct
import sys

# name -> (bytes, what is wrong, ErrorKind, distinctive substring of the error message)
BAD = {}
# name -> (bytes, description)
GOOD = {}


def f32(*values):
    return b"".join(struct.pack("<f", v) for v in values)


def st(header, data=b"", n=None):
    """A file: length prefix (N = len(header) unless given), header, data."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    if n is None:
        n = len(header)
    return struct.pack("<Q", n) + header + data


def padded(header):
    """Pad a header with spaces to a multiple of 8 bytes, as the Rust crate writes it."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    return header + b" " * ((8 - len(header) % 8) % 8)


def bad(name, data, what, kind, substring):
    assert name not in BAD and name not in GOOD, name
    BAD[name] = (data, what, kind, substring)


def good(name, data, what):
    assert name not in BAD and name not in GOOD, name
    GOOD[name] = (data, what)


# A correct single-tensor header: 'w' F32 [2, 3] -> 24 bytes.
W = '{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}'
W_DATA = f32(1, 2, 3, 4, 5, 6)


def entry(dtype='"F32"', shape="[2,3]", offsets="[0,24]"):
    return '{"w":{"dtype":%s,"shape":%s,"data_offsets":%s}}' % (dtype, shape, offsets)


def build():
    # ---------------------------------------------------------------- length prefix
    bad("empty_file.safetensors", b"",
        "0 bytes: no room for the 8-byte header length", "format", "too short for the 8-byte header length")
    bad("too_short.safetensors", b"\x02\x00\x00\x00\x00",
        "5 bytes, shorter than the length prefix", "format", "file is 5 bytes, too short")
    bad("header_too_large.safetensors", st("{}", n=100_000_001),
        "N = 100,000,001 > the 100,000,000 limit", "format", "header length 100000001 exceeds the limit")
    bad("header_length_max_u64.safetensors", st("{}", n=2**64 - 1),
        "N = 2^64 - 1 (would overflow 8 + N)", "format", "header length 18446744073709551615 exceeds the limit")
    bad("header_past_eof.safetensors", st(W, W_DATA, n=1000),
        "N = 1000 but the file is much shorter", "format", "header length 1000 runs past the end of the file")
    bad("header_empty.safetensors", st(""),
        "N = 0: no JSON at all", "format", "header is empty")

    # ---------------------------------------------------------------- UTF-8
    bad("header_not_utf8.safetensors",
        st(b'{"w\xff":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', W_DATA),
        "byte 0xff inside a tensor name", "format", "header is not valid UTF-8: byte 0xff at header byte 3")
    bad("header_overlong_utf8.safetensors",
        st(b'{"w\xc0\xaf":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', W_DATA),
        "overlong encoding C0 AF of '/'", "format", "header is not valid UTF-8: byte 0xc0")
    bad("header_utf8_surrogate.safetensors",
        st(b'{"w\xed\xa0\x80":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', W_DATA),
        "UTF-8-encoded surrogate U+D800 (ED A0 80)", "format", "header is not valid UTF-8: byte 0xed")
    bad("header_truncated_utf8.safetensors", st(b'{"w\xe6\x97', b""),
        "header ends inside a 3-byte UTF-8 sequence", "format", "header is not valid UTF-8: byte 0xe6")

    # ---------------------------------------------------------------- start of the header
    bad("header_not_object.safetensors", st(padded("[]")),
        "header is a JSON array", "format", "header must start with '{', found '['")
    bad("header_leading_space.safetensors", st(" " + W, W_DATA),
        "whitespace before the '{'", "format", "header must start with '{', found byte 0x20")

    # ---------------------------------------------------------------- JSON syntax
    bad("json_truncated.safetensors", st('{"w":{"dtype":"F32","sha'),
        "JSON ends inside a key", "format", "unterminated string")
    bad("json_unclosed_object.safetensors", st('{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}', W_DATA),
        "the top-level object is never closed", "format", "found the end of the header")
    bad("json_trailing_garbage.safetensors", st(W + "x", W_DATA),
        "'x' after the object", "format", "unexpected 'x' after the top-level object")
    bad("json_second_object.safetensors", st(W + " {}", W_DATA),
        "a second JSON value after the object", "format", "unexpected '{' after the top-level object")
    bad("json_nul_padding.safetensors", st(W + "\0\0\0\0\0\0", W_DATA),
        "header padded with NUL bytes instead of spaces", "format", "unexpected byte 0x00 after the top-level object")
    bad("json_trailing_comma.safetensors",
        st('{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},}', W_DATA),
        "a ',' before '}'", "format", "expected a string key, found '}'")
    bad("json_trailing_comma_array.safetensors", st(entry(shape="[2,3,]"), W_DATA),
        "a ',' before ']'", "format", "expected a value, found ']'")
    bad("json_missing_colon.safetensors", st('{"w" {"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', W_DATA),
        "no ':' after a key", "format", "expected ':' after key 'w'")
    bad("json_single_quotes.safetensors", st("{'w':{}}"),
        "single-quoted key", "format", "expected a string key, found '''")
    bad("json_bad_escape.safetensors", st('{"w\\x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', W_DATA),
        "invalid escape \\x in a name", "format", "invalid escape sequence '\\x'")
    bad("json_bad_unicode_escape.safetensors",
        st('{"w\\u12g4":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', W_DATA),
        "\\u escape with a non-hex digit", "format", "invalid \\u escape")
    bad("json_lone_high_surrogate.safetensors",
        st('{"w\\ud800":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', W_DATA),
        "\\ud800 not followed by a low surrogate", "format", "lone high surrogate \\ud800")
    bad("json_lone_low_surrogate.safetensors",
        st('{"w\\udc00":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', W_DATA),
        "\\udc00 without a preceding high surrogate", "format", "lone low surrogate \\udc00")
    bad("json_control_char.safetensors",
        st('{"w\n":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', W_DATA),
        "raw newline inside a string", "format", "unescaped control character 0x0a")
    bad("json_bad_literal.safetensors", st('{"__metadata__":nul}'),
        "misspelled null", "format", "invalid literal")
    bad("json_leading_zero.safetensors", st(entry(shape="[02,3]"), W_DATA),
        "number with a leading zero", "format", "expected ',' or ']' after an array element, found '2'")
    bad("json_too_deep.safetensors",
        st('{"__metadata__":' + "[" * 100 + "]" * 100 + "}"),
        "arrays nested 100 deep", "format", "nesting deeper than 64 levels")
    bad("json_duplicate_key.safetensors",
        st('{"w":{"dtype":"F32","dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', W_DATA),
        "'dtype' twice in one entry", "format", "duplicate key 'dtype'")
    bad("duplicate_tensor_name.safetensors",
        st('{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},'
           '"w":{"dtype":"F32","shape":[2,3],"data_offsets":[24,48]}}', W_DATA + W_DATA),
        "tensor 'w' twice", "format", "duplicate tensor name 'w'")
    bad("duplicate_tensor_name_escaped.safetensors",
        st('{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},'
           '"\\u0077":{"dtype":"F32","shape":[2,3],"data_offsets":[24,48]}}', W_DATA + W_DATA),
        "'w' and '\\u0077' are the same name", "format", "duplicate tensor name 'w'")
    bad("duplicate_metadata.safetensors",
        st('{"__metadata__":{"a":"1"},"__metadata__":{"b":"2"}}'),
        "'__metadata__' twice", "format", "duplicate key '__metadata__'")

    # ---------------------------------------------------------------- schema
    bad("entry_not_object.safetensors", st('{"w":[0,24]}', W_DATA),
        "tensor entry is an array", "format", "tensor 'w': entry must be an object")
    bad("dtype_not_string.safetensors", st(entry(dtype="32"), W_DATA),
        "dtype is a number", "format", "tensor 'w': 'dtype' must be a string, got a number")
    bad("dtype_unknown.safetensors", st(entry(dtype='"F128"'), W_DATA),
        "dtype F128 does not exist", "format", "tensor 'w': unknown dtype 'F128'")
    bad("dtype_lowercase.safetensors", st(entry(dtype='"f32"'), W_DATA),
        "dtype names are case-sensitive", "format", "tensor 'w': unknown dtype 'f32'")
    bad("field_unknown.safetensors",
        st('{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24],"offset":0}}', W_DATA),
        "extra field 'offset' in an entry", "format", "tensor 'w': unknown field 'offset'")
    bad("field_missing_dtype.safetensors", st('{"w":{"shape":[2,3],"data_offsets":[0,24]}}', W_DATA),
        "no dtype", "format", "tensor 'w': missing field 'dtype'")
    bad("field_missing_shape.safetensors", st('{"w":{"dtype":"F32","data_offsets":[0,24]}}', W_DATA),
        "no shape", "format", "tensor 'w': missing field 'shape'")
    bad("field_missing_offsets.safetensors", st('{"w":{"dtype":"F32","shape":[2,3]}}', W_DATA),
        "no data_offsets", "format", "tensor 'w': missing field 'data_offsets'")
    bad("shape_not_array.safetensors", st(entry(shape='"2x3"'), W_DATA),
        "shape is a string", "format", "tensor 'w': 'shape' must be an array of non-negative integers, got a string")
    bad("shape_string_element.safetensors", st(entry(shape='[2,"3"]'), W_DATA),
        "a shape element is a string", "format", "tensor 'w': shape[1] must be a non-negative integer, got a string")
    bad("shape_negative.safetensors", st(entry(shape="[-2,3]"), W_DATA),
        "negative dimension", "format", "tensor 'w': shape[0] = -2 is negative")
    bad("shape_float.safetensors", st(entry(shape="[2.0,3]"), W_DATA),
        "dimension written as 2.0", "format", "tensor 'w': shape[0] = 2.0 is not an integer")
    bad("shape_exponent.safetensors", st(entry(shape="[2,3e0]"), W_DATA),
        "dimension written as 3e0", "format", "tensor 'w': shape[1] = 3e0 is not an integer")
    bad("shape_too_large.safetensors", st(entry(shape="[9223372036854775808,3]"), W_DATA),
        "dimension 2^63 does not fit in int64", "format", "tensor 'w': shape[0] = 9223372036854775808 is too large")
    bad("shape_numel_overflow.safetensors",
        st(entry(dtype='"I32"', shape="[2,9223372036854775807]", offsets="[0,16]"), bytes(16)),
        "2 x (2^63 - 1) elements overflow", "format", "tensor 'w' shape [2, 9223372036854775807]: the element count overflows")
    bad("shape_nbytes_overflow.safetensors",
        st(entry(dtype='"I32"', shape="[4611686018427387904]", offsets="[0,16]"), bytes(16)),
        "2^62 elements x 4 bytes overflow", "format", "tensor 'w' dtype I32 x shape [4611686018427387904]: the byte size overflows")
    bad("offsets_not_array.safetensors", st(entry(offsets='{"begin":0,"end":24}'), W_DATA),
        "data_offsets is an object", "format", "tensor 'w': 'data_offsets' must be an array [begin, end], got an object")
    bad("offsets_wrong_length.safetensors", st(entry(offsets="[0,24,48]"), W_DATA),
        "3 offsets", "format", "tensor 'w': 'data_offsets' must hold exactly 2 integers [begin, end], got 3")
    bad("offsets_negative.safetensors", st(entry(offsets="[-24,0]"), W_DATA),
        "negative begin", "format", "tensor 'w': data_offsets[0] = -24 is negative")
    bad("offsets_too_large.safetensors", st(entry(offsets="[0,18446744073709551616]"), W_DATA),
        "end = 2^64 does not fit in 64 bits", "format", "tensor 'w': data_offsets[1] = 18446744073709551616 is too large")
    bad("metadata_not_object.safetensors", st('{"__metadata__":"pt"}'),
        "__metadata__ is a string", "format", "'__metadata__' must be an object of strings, got a string")
    bad("metadata_value_not_string.safetensors", st('{"__metadata__":{"step":1000}}'),
        "a metadata value is a number", "format", "'__metadata__' value of key 'step' must be a string, got a number")
    bad("metadata_value_nested.safetensors", st('{"__metadata__":{"cfg":{"a":"b"}}}'),
        "a metadata value is an object", "format", "'__metadata__' value of key 'cfg' must be a string, got an object")

    # ---------------------------------------------------------------- offsets vs. data buffer
    two = '{"a":{"dtype":"F32","shape":[3],"data_offsets":%s},"b":{"dtype":"F32","shape":[3],"data_offsets":%s}}'
    bad("offsets_not_start_at_zero.safetensors", st(entry(offsets="[4,28]"), bytes(4) + W_DATA),
        "the only tensor begins at 4", "format", "tensor 'w' data_offsets [4, 28]: the first tensor must begin at offset 0")
    bad("offsets_gap.safetensors", st(two % ("[0,12]", "[16,28]"), bytes(28)),
        "4 unused bytes between a and b", "format", "tensor 'b' data_offsets [16, 28] leave a gap of 4 bytes after tensor 'a'")
    bad("offsets_overlap.safetensors", st(two % ("[0,12]", "[8,20]"), bytes(20)),
        "b starts inside a", "format", "tensor 'b' data_offsets [8, 20] overlap tensor 'a' data_offsets [0, 12]")
    bad("offsets_same_range.safetensors", st(two % ("[0,12]", "[0,12]"), bytes(12)),
        "a and b share their bytes", "format", "tensor 'b' data_offsets [0, 12] overlap tensor 'a' data_offsets [0, 12]")
    bad("offsets_end_before_begin.safetensors",
        st('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},'
           '"b":{"dtype":"F32","shape":[0],"data_offsets":[12,8]}}', bytes(12)),
        "b has end 8 < begin 12", "format", "tensor 'b' data_offsets [12, 8] end before they begin")
    bad("offsets_size_mismatch.safetensors", st(entry(offsets="[0,12]"), W_DATA[:12]),
        "12 bytes for an F32 [2, 3] tensor", "format",
        "tensor 'w' data_offsets [0, 12] hold 12 bytes, but dtype F32 x shape [2, 3] needs 24")
    bad("data_trailing_bytes.safetensors", st(padded(W), W_DATA + b"polyglot"),
        "8 bytes after the last tensor", "format", "the data buffer holds 32 bytes, but the tensors end at offset 24: 8 trailing bytes")
    bad("data_truncated.safetensors", st(padded(W), W_DATA[:20]),
        "last tensor cut short by 4 bytes", "format", "the data buffer holds 20 bytes, but the tensors end at offset 24: 4 bytes missing")
    bad("data_missing.safetensors", st(padded(W)),
        "no data at all", "format", "the data buffer holds 0 bytes, but the tensors end at offset 24")

    # ---------------------------------------------------------------- valid files
    good("valid_empty.safetensors", st(padded("{}")),
         "no tensors, header '{}' padded with spaces")
    # Header order differs from data order; a scalar, a zero-size tensor, metadata, escapes,
    # all JSON whitespace kinds as trailing padding.
    hdr = ('{"__metadata__":{"format":"pt","note":"tab\\there \\"quoted\\" \\u00e9\\ud83d\\ude00"},'
           '"z":{"dtype":"BF16","shape":[2],"data_offsets":[34,38]},'
           '"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},'
           '"empty":{"dtype":"F32","shape":[0,4],"data_offsets":[24,24]},'
           '"scalar":{"dtype":"I64","shape":[],"data_offsets":[24,32]},'
           '"h\\u00e9":{"dtype":"F16","shape":[1],"data_offsets":[32,34]}}')
    data = (W_DATA + struct.pack("<q", -7) + struct.pack("<H", 0x3c00)  # F16 1.0
            + struct.pack("<HH", 0x3f80, 0xc000))  # BF16 1.0, -2.0
    good("valid_basic.safetensors", st(hdr + " \t\r\n  ", data),
         "5 tensors (F32 [2,3], F32 [0,4], I64 scalar, F16 [1] named 'h\\u00e9', BF16 [2]) in "
         "shuffled header order, metadata with escapes, whitespace padding")
    good("valid_rust_reference.safetensors",
         st('{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}',
            f32(0, 1, 2, 3, 4, 5)),
         "byte-identical to the Rust crate's test_serialization output")


def readme():
    lines = [
        "# Safetensors test files",
        "",
        "Generated by `tools/make_bad_safetensors.py` (do not edit by hand; rerun the script).",
        "`tests/test_safetensors.cpp` loads every file here: each bad file must throw",
        "`eigenformer::Error` with the listed `ErrorKind` and a message containing the listed text;",
        "each valid file must load.",
        "",
        "## Bad files",
        "",
        "| file | what is wrong | ErrorKind | message contains |",
        "| --- | --- | --- | --- |",
    ]

    def cell(s):
        return s.replace("|", "\\|")

    for name, (_, what, kind, sub) in BAD.items():
        lines.append("| `%s` | %s | %s | `%s` |" % (name, cell(what), kind, cell(sub)))
    lines += ["", "## Valid files", "", "| file | contents |", "| --- | --- |"]
    for name, (_, what) in GOOD.items():
        lines.append("| `%s` | %s |" % (name, cell(what)))
    return "\n".join(lines) + "\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "data", "safetensors")
    build()
    os.makedirs(out, exist_ok=True)
    for name, value in list(BAD.items()) + list(GOOD.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(value[0])
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(readme())
    print("wrote %d bad and %d valid files to %s" % (len(BAD), len(GOOD), os.path.normpath(out)))


if __name__ == "__main__":
    main()
