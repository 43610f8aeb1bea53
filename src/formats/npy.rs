//! numpy's `.npy` arrays and `.npz` archives, read without Python: plain arrays of
//! floats, ints, bools and unicode strings in C or Fortran order, and object arrays
//! (pickled, decoded by the inert [`pickle`](super::pickle) VM, never evaluated).
//!
//! Shapes in headers and pickles are never trusted: element counts are multiplied with
//! overflow checks and compared with the bytes actually present before anything is
//! allocated, zip entry sizes are checked against the file size, the pickle VM has its
//! own limits, and an object array may hold arrays but not further object arrays (so
//! decoding cannot recurse). Errors name the entry (`data.npy`) and what was wrong.
//!
//! What the arrays mean is up to the reader: GAN Dissection's quantile sketches are
//! read by `crate::project::quantiles`.

use std::io::{Cursor, Read};

use super::pickle::{self, PickleError, Value};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Why a `.npy` array or `.npz` archive could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NpyError {
    #[error("not a .npy array (it does not start with \\x93NUMPY)")]
    Magic,
    #[error("unsupported .npy format version {major}.{minor} (known: 1.0, 2.0, 3.0)")]
    Version { major: u8, minor: u8 },
    #[error("the .npy header is cut off: it needs {needed} bytes, {available} are left")]
    Truncated { needed: u64, available: usize },
    #[error("bad .npy header `{header}`: {detail}")]
    Header { header: String, detail: String },
    #[error("unsupported dtype `{0}`")]
    Dtype(String),
    #[error("Fortran-order (column-major) .npy arrays are not supported")]
    FortranOrder,
    #[error("shape {shape:?} of `{dtype}` needs {needed} bytes of data, found {found}")]
    DataSize {
        shape: Vec<usize>,
        dtype: String,
        needed: u64,
        found: usize,
    },
    #[error("shape {0:?} is too large")]
    TooLarge(Vec<u64>),
    #[error("object array pickle: {0}")]
    Pickle(#[from] PickleError),
    #[error("object array: {0}")]
    Object(String),
    #[error("bad zip archive: {0}")]
    Zip(String),
    #[error("entry `{entry}`: {source}")]
    Entry {
        entry: String,
        #[source]
        source: Box<NpyError>,
    },
    #[error("entry `{entry}`: {detail}")]
    Content { entry: String, detail: String },
    #[error("no entry `{0}`")]
    MissingEntry(String),
}

/// A decoded array; `data` is in row-major (C) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

/// The elements of an [`NpyArray`]. Integer dtypes of every width widen to `i64`.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    Bool(Vec<bool>),
    Int(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// `<U` strings, trailing NULs removed.
    Str(Vec<String>),
    /// `|O`: each element an array; Python scalars become 0-d arrays.
    Object(Vec<NpyArray>),
}

impl NpyData {
    pub fn len(&self) -> usize {
        match self {
            NpyData::Bool(v) => v.len(),
            NpyData::Int(v) => v.len(),
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
            NpyData::Str(v) => v.len(),
            NpyData::Object(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            NpyData::Bool(_) => "bool",
            NpyData::Int(_) => "int",
            NpyData::F32(_) => "float32",
            NpyData::F64(_) => "float64",
            NpyData::Str(_) => "str",
            NpyData::Object(_) => "object",
        }
    }

    /// Column-major elements of `shape`, reordered row-major.
    fn fortran_to_c(self, shape: &[usize]) -> Self {
        match self {
            NpyData::Bool(v) => NpyData::Bool(fortran_to_c(&v, shape)),
            NpyData::Int(v) => NpyData::Int(fortran_to_c(&v, shape)),
            NpyData::F32(v) => NpyData::F32(fortran_to_c(&v, shape)),
            NpyData::F64(v) => NpyData::F64(fortran_to_c(&v, shape)),
            NpyData::Str(v) => NpyData::Str(fortran_to_c(&v, shape)),
            NpyData::Object(v) => NpyData::Object(fortran_to_c(&v, shape)),
        }
    }
}

impl NpyArray {
    /// Floats (and integers) as `f64`, row-major; `None` for other dtypes.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        match &self.data {
            NpyData::F32(v) => Some(v.iter().map(|&x| f64::from(x)).collect()),
            NpyData::F64(v) => Some(v.clone()),
            NpyData::Int(v) => Some(v.iter().map(|&x| x as f64).collect()),
            _ => None,
        }
    }

    /// The value of a 0-d (or one-element) integer array.
    pub fn as_int_scalar(&self) -> Option<i64> {
        match &self.data {
            NpyData::Int(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        }
    }

    /// The value of a 0-d (or one-element) string array.
    pub fn as_str_scalar(&self) -> Option<&str> {
        match &self.data {
            NpyData::Str(v) if v.len() == 1 => Some(&v[0]),
            _ => None,
        }
    }

    /// `float32[13, 6]`, for messages.
    pub fn describe(&self) -> String {
        format!("{}{:?}", self.data.type_name(), self.shape)
    }
}

// ---------------------------------------------------------------------------------------
// .npy

/// The dtypes this reader knows. Multi-byte values are little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dtype {
    Bool,
    Int {
        bytes: usize,
        signed: bool,
    },
    F32,
    F64,
    /// `<U{chars}`: UCS-4, four bytes a character.
    Unicode(usize),
    Object,
}

impl Dtype {
    /// Parses a numpy type string such as `<f4`, `|b1`, `<U41` or `|O`.
    fn parse(descr: &str) -> Result<Self, NpyError> {
        let bad = || NpyError::Dtype(descr.to_string());
        let mut chars = descr.chars();
        let order = chars.next().ok_or_else(bad)?;
        let kind = chars.next().ok_or_else(bad)?;
        let size = chars.as_str();
        let size: usize = match size {
            "" => 0,
            digits if digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse().map_err(|_| bad())?
            }
            _ => return Err(bad()),
        };
        let dtype = match (kind, size) {
            ('b', 1) => Dtype::Bool,
            ('i', 1 | 2 | 4 | 8) => Dtype::Int {
                bytes: size,
                signed: true,
            },
            ('u', 1 | 2 | 4 | 8) => Dtype::Int {
                bytes: size,
                signed: false,
            },
            ('f', 4) => Dtype::F32,
            ('f', 8) => Dtype::F64,
            ('U', 1..) => Dtype::Unicode(size),
            // The header says `|O`, a pickled dtype `O8`.
            ('O', 0 | 8) => Dtype::Object,
            _ => return Err(bad()),
        };
        match order {
            // numpy writes `<`, or `|` where order does not matter; `=` is native, and
            // every machine numpy files come from is little-endian.
            '<' | '|' | '=' => Ok(dtype),
            '>' if dtype.itemsize() == Some(1) => Ok(dtype),
            '>' => Err(NpyError::Dtype(format!("{descr} (big-endian)"))),
            _ => Err(bad()),
        }
    }

    /// Bytes per element; `None` for objects (and absurd string lengths).
    fn itemsize(self) -> Option<usize> {
        match self {
            Dtype::Bool => Some(1),
            Dtype::Int { bytes, .. } => Some(bytes),
            Dtype::F32 => Some(4),
            Dtype::F64 => Some(8),
            Dtype::Unicode(chars) => chars.checked_mul(4),
            Dtype::Object => None,
        }
    }
}

/// The product of `shape`, or [`NpyError::TooLarge`].
fn element_count(shape: &[usize]) -> Result<usize, NpyError> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| NpyError::TooLarge(shape.iter().map(|&d| d as u64).collect()))
}

/// Decodes the raw little-endian bytes of a plain (non-object) array, after checking
/// that they are exactly what `shape` needs.
fn decode_plain(
    dtype: Dtype,
    descr: &str,
    shape: &[usize],
    bytes: &[u8],
) -> Result<NpyData, NpyError> {
    let count = element_count(shape)?;
    let itemsize = dtype
        .itemsize()
        .ok_or_else(|| NpyError::Dtype(descr.to_string()))?;
    let needed = count
        .checked_mul(itemsize)
        .ok_or_else(|| NpyError::TooLarge(shape.iter().map(|&d| d as u64).collect()))?;
    if bytes.len() != needed {
        return Err(NpyError::DataSize {
            shape: shape.to_vec(),
            dtype: descr.to_string(),
            needed: needed as u64,
            found: bytes.len(),
        });
    }
    if itemsize == 0 {
        // Only for zero-size types, which `Dtype::parse` does not produce.
        return Err(NpyError::Dtype(descr.to_string()));
    }
    let items = bytes.chunks_exact(itemsize);
    Ok(match dtype {
        Dtype::Bool => NpyData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        Dtype::Int { bytes: 8, signed } => NpyData::Int(
            items
                .map(|c| {
                    let raw: [u8; 8] = c.try_into().unwrap_or_default();
                    if signed {
                        Ok(i64::from_le_bytes(raw))
                    } else {
                        i64::try_from(u64::from_le_bytes(raw))
                            .map_err(|_| NpyError::Dtype(format!("{descr} (a value above 2^63)")))
                    }
                })
                .collect::<Result<_, _>>()?,
        ),
        Dtype::Int { signed, .. } => NpyData::Int(
            items
                .map(|c| {
                    // Sign- or zero-extend 1, 2 or 4 little-endian bytes.
                    let fill = if signed && c[c.len() - 1] & 0x80 != 0 {
                        0xff
                    } else {
                        0
                    };
                    let mut raw = [fill; 8];
                    raw[..c.len()].copy_from_slice(c);
                    i64::from_le_bytes(raw)
                })
                .collect(),
        ),
        Dtype::F32 => NpyData::F32(
            items
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        ),
        Dtype::F64 => NpyData::F64(
            items
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        ),
        Dtype::Unicode(_) => NpyData::Str(
            items
                .map(|c| {
                    let text: Option<String> = c
                        .chunks_exact(4)
                        .map(|u| char::from_u32(u32::from_le_bytes([u[0], u[1], u[2], u[3]])))
                        .collect();
                    let text = text.ok_or_else(|| {
                        NpyError::Dtype(format!("{descr} (not a Unicode code point)"))
                    })?;
                    Ok(text.trim_end_matches('\0').to_string())
                })
                .collect::<Result<_, NpyError>>()?,
        ),
        Dtype::Object => return Err(NpyError::Dtype(descr.to_string())),
    })
}

/// Reorders column-major `values` of `shape` into row-major order.
fn fortran_to_c<T: Clone>(values: &[T], shape: &[usize]) -> Vec<T> {
    if shape.len() < 2 || values.is_empty() {
        return values.to_vec();
    }
    // Column-major strides: the first index varies fastest.
    let mut strides = Vec::with_capacity(shape.len());
    let mut stride = 1usize;
    for &d in shape {
        strides.push(stride);
        stride = stride.saturating_mul(d);
    }
    let mut index = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(values.len());
    for _ in 0..values.len() {
        let offset: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        match values.get(offset) {
            Some(v) => out.push(v.clone()),
            None => break,
        }
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// A parsed `.npy` header.
#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value in the header's Python dict literal.
#[derive(Debug)]
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

/// Parses the header, a Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (6, 2), }` padded with spaces.
fn parse_header(text: &str) -> Result<Header, NpyError> {
    let shown: String = text.trim_end().chars().take(200).collect();
    let error = |detail: String| NpyError::Header {
        header: shown.clone(),
        detail,
    };
    let mut parser = LiteralParser {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let entries = parser.dict().map_err(error)?;
    parser.skip_space();
    if parser.pos != text.len() {
        return Err(error(format!("unexpected text at byte {}", parser.pos)));
    }
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (key, value) in entries {
        match (key.as_str(), value) {
            ("descr", Literal::Str(s)) => descr = Some(s),
            ("fortran_order", Literal::Bool(b)) => fortran_order = Some(b),
            ("shape", Literal::Tuple(dims)) => shape = Some(dims),
            ("descr" | "fortran_order" | "shape", other) => {
                return Err(error(format!("`{key}` has the wrong type: {other:?}")))
            }
            // numpy rejects other keys; they cannot change how the data reads.
            _ => {}
        }
    }
    let missing = |key: &str| error(format!("no `{key}`"));
    let dims = shape.ok_or_else(|| missing("shape"))?;
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| NpyError::TooLarge(dims.clone()))?;
    Ok(Header {
        descr: descr.ok_or_else(|| missing("descr"))?,
        fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
        shape,
    })
}

/// Just enough of Python's literal syntax for `.npy` headers.
struct LiteralParser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl LiteralParser<'_> {
    fn skip_space(&mut self) {
        while self
            .bytes
            .get(self.pos)
            .is_some_and(u8::is_ascii_whitespace)
        {
            self.pos += 1;
        }
    }

    /// Skips spaces; then consumes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.bytes.get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(format!("expected `{}` at byte {}", byte as char, self.pos))
        }
    }

    fn dict(&mut self) -> Result<Vec<(String, Literal)>, String> {
        self.expect(b'{')?;
        let mut entries = Vec::new();
        while !self.eat(b'}') {
            let key = self.string()?;
            self.expect(b':')?;
            let value = self.value()?;
            entries.push((key, value));
            if !self.eat(b',') {
                self.expect(b'}')?;
                break;
            }
        }
        Ok(entries)
    }

    fn value(&mut self) -> Result<Literal, String> {
        self.skip_space();
        let rest = &self.bytes[self.pos.min(self.bytes.len())..];
        match rest.first() {
            Some(b'\'' | b'"') => self.string().map(Literal::Str),
            Some(b'(') => self.tuple().map(Literal::Tuple),
            Some(b'[') => Err("structured dtypes (a list descr) are not supported".into()),
            _ if rest.starts_with(b"True") => {
                self.pos += 4;
                Ok(Literal::Bool(true))
            }
            _ if rest.starts_with(b"False") => {
                self.pos += 5;
                Ok(Literal::Bool(false))
            }
            _ => Err(format!("unexpected value at byte {}", self.pos)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let quote = match self.bytes.get(self.pos) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a string at byte {}", self.pos)),
        };
        let start = self.pos + 1;
        let len = self.bytes[start..]
            .iter()
            .position(|&b| b == quote || b == b'\\')
            .ok_or_else(|| format!("unterminated string at byte {}", self.pos))?;
        if self.bytes[start + len] == b'\\' {
            return Err(format!(
                "escapes in strings are not supported (byte {})",
                start + len
            ));
        }
        self.pos = start + len + 1;
        // Quotes are ASCII, so the slice is whole UTF-8.
        Ok(String::from_utf8_lossy(&self.bytes[start..start + len]).into_owned())
    }

    fn tuple(&mut self) -> Result<Vec<u64>, String> {
        self.expect(b'(')?;
        let mut items = Vec::new();
        while !self.eat(b')') {
            self.skip_space();
            let start = self.pos;
            while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                self.pos += 1;
            }
            let digits = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or("");
            let value: u64 = digits
                .parse()
                .map_err(|_| format!("expected a dimension at byte {start}"))?;
            // Python 2's long suffix (`(3L,)`).
            if self.bytes.get(self.pos) == Some(&b'L') {
                self.pos += 1;
            }
            items.push(value);
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Ok(items)
    }
}

/// Parses a whole `.npy` file: header, then the raw data or (`|O`) the pickle.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    let prefix = &bytes[..bytes.len().min(MAGIC.len())];
    if prefix != &MAGIC[..prefix.len()] {
        return Err(NpyError::Magic);
    }
    let truncated = |needed: usize| NpyError::Truncated {
        needed: needed as u64,
        available: bytes.len(),
    };
    if bytes.len() < 10 {
        return Err(truncated(10));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start) = match (major, minor) {
        (1, 0) => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        (2 | 3, 0) => {
            let len = bytes
                .get(8..12)
                .ok_or_else(|| truncated(12))?
                .try_into()
                .map(u32::from_le_bytes)
                .unwrap_or(0);
            (len as usize, 12)
        }
        _ => return Err(NpyError::Version { major, minor }),
    };
    let end = start + header_len;
    let header_bytes = bytes.get(start..end).ok_or(NpyError::Truncated {
        needed: end as u64,
        available: bytes.len(),
    })?;
    // Versions 1 and 2 are latin-1, version 3 UTF-8.
    let text = if major == 3 {
        std::str::from_utf8(header_bytes)
            .map_err(|e| NpyError::Header {
                header: String::from_utf8_lossy(header_bytes)
                    .chars()
                    .take(200)
                    .collect(),
                detail: e.to_string(),
            })?
            .to_string()
    } else {
        header_bytes.iter().map(|&b| char::from(b)).collect()
    };
    let header = parse_header(&text)?;
    if header.fortran_order {
        return Err(NpyError::FortranOrder);
    }
    let dtype = Dtype::parse(&header.descr)?;
    let body = &bytes[end..];
    if dtype != Dtype::Object {
        let data = decode_plain(dtype, &header.descr, &header.shape, body)?;
        return Ok(NpyArray {
            shape: header.shape,
            data,
        });
    }
    let (value, consumed) = pickle::parse(body)?;
    if consumed != body.len() {
        return Err(NpyError::Object(format!(
            "{} bytes follow the pickle",
            body.len() - consumed
        )));
    }
    let array = decode_pickled_array(&value, true)?;
    if array.shape != header.shape {
        return Err(NpyError::Object(format!(
            "the pickle holds shape {:?}, the header says {:?}",
            array.shape, header.shape
        )));
    }
    Ok(array)
}

// ---------------------------------------------------------------------------------------
// Pickled numpy arrays

/// An array pickled by `ndarray.__reduce__`: `_reconstruct(ndarray, (0,), b'b')` then
/// `BUILD` with `([version,] shape, dtype, is_fortran, data)`. `data` is the raw bytes
/// (column-major when `is_fortran`), or for object arrays a list of the elements in
/// row-major order. Object elements may be arrays only when `allow_object` is false.
fn decode_pickled_array(value: &Value, allow_object: bool) -> Result<NpyArray, NpyError> {
    let bad = |detail: String| NpyError::Object(detail);
    let object = value.as_object().ok_or_else(|| {
        bad(format!(
            "expected a numpy array, found {}",
            value.type_name()
        ))
    })?;
    match object.callable_name() {
        Some(("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct")) => {}
        other => {
            return Err(bad(format!(
                "expected numpy's `_reconstruct`, found {}",
                other.map_or_else(
                    || object.callable.type_name().to_string(),
                    |(m, n)| format!("`{m}.{n}`")
                )
            )))
        }
    }
    let class = object.args().and_then(|a| a.first());
    if !class.is_some_and(|c| c.is_global("numpy", "ndarray")) {
        return Err(bad("not a plain numpy.ndarray (a subclass?)".into()));
    }
    let state = object
        .state
        .as_ref()
        .and_then(Value::as_seq)
        .ok_or_else(|| bad("the array has no (shape, dtype, …) state".into()))?;
    // Version 1 prefixes the state with the version; version 0 does not.
    let [shape, dtype, is_fortran, raw] = match state {
        [_version, shape, dtype, is_fortran, raw] => [shape, dtype, is_fortran, raw],
        [shape, dtype, is_fortran, raw] => [shape, dtype, is_fortran, raw],
        _ => {
            return Err(bad(format!(
                "array state has {} items, expected 4 or 5",
                state.len()
            )))
        }
    };
    let shape: Vec<usize> = shape
        .as_seq()
        .and_then(|dims| {
            dims.iter()
                .map(|d| d.as_int().and_then(|d| usize::try_from(d).ok()))
                .collect()
        })
        .ok_or_else(|| bad("the array shape is not a tuple of sizes".into()))?;
    let (dtype, descr) = decode_pickled_dtype(dtype)?;
    let is_fortran = is_fortran
        .as_bool()
        .ok_or_else(|| bad(format!("is_fortran is a {}", is_fortran.type_name())))?;
    let count = element_count(&shape)?;
    let data = match dtype {
        Dtype::Object => {
            if !allow_object {
                return Err(bad(
                    "object arrays inside object arrays are not supported".into()
                ));
            }
            let items = raw.as_seq().ok_or_else(|| {
                bad(format!(
                    "object array data is a {}, not a list",
                    raw.type_name()
                ))
            })?;
            if items.len() != count {
                return Err(bad(format!(
                    "shape {shape:?} needs {count} elements, the list has {}",
                    items.len()
                )));
            }
            NpyData::Object(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        decode_object_element(item).map_err(|e| bad(format!("element {i}: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
        Dtype::Unicode(_) => {
            // Pickled string dtypes give their size in bytes, not characters.
            return Err(NpyError::Dtype(format!("{descr} (inside a pickle)")));
        }
        _ => {
            let bytes = raw
                .bytes_like()
                .ok_or_else(|| bad(format!("array data is a {}, not bytes", raw.type_name())))?;
            let data = decode_plain(dtype, &descr, &shape, &bytes)?;
            if is_fortran {
                data.fortran_to_c(&shape)
            } else {
                data
            }
        }
    };
    Ok(NpyArray { shape, data })
}

/// `numpy.dtype('f4', False, True)` + `BUILD` with `(3, '<', …)`: the type and byte
/// order, as a type string (`<f4`).
fn decode_pickled_dtype(value: &Value) -> Result<(Dtype, String), NpyError> {
    let bad = |detail: String| NpyError::Object(format!("array dtype: {detail}"));
    let object = value
        .as_object()
        .filter(|o| o.callable_name() == Some(("numpy", "dtype")))
        .ok_or_else(|| {
            bad(format!(
                "expected numpy.dtype(…), found {}",
                value.type_name()
            ))
        })?;
    let kind = object
        .args()
        .and_then(|a| a.first())
        .and_then(Value::as_text)
        .ok_or_else(|| bad("no type string".into()))?;
    let order = object
        .state
        .as_ref()
        .and_then(Value::as_seq)
        .and_then(|s| s.get(1))
        .and_then(Value::as_text)
        .ok_or_else(|| bad(format!("`{kind}` has no byte order")))?;
    let descr = format!("{order}{kind}");
    Ok((Dtype::parse(&descr)?, descr))
}

/// An element of an object array: an array, or a Python scalar as a 0-d array.
fn decode_object_element(value: &Value) -> Result<NpyArray, NpyError> {
    let scalar = |data| {
        Ok(NpyArray {
            shape: Vec::new(),
            data,
        })
    };
    match value {
        Value::Object(_) => decode_pickled_array(value, false),
        Value::Bool(b) => scalar(NpyData::Bool(vec![*b])),
        Value::Int(i) => scalar(NpyData::Int(vec![*i])),
        Value::Float(f) => scalar(NpyData::F64(vec![*f])),
        Value::String(s) => scalar(NpyData::Str(vec![s.clone()])),
        other => Err(NpyError::Object(format!(
            "a {} is not an array",
            other.type_name()
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// .npz

/// An `.npz` archive (`numpy.savez`): one `<key>.npy` entry per array, stored or
/// deflated (`savez_compressed`).
pub struct Npz<'a> {
    archive: zip::ZipArchive<Cursor<&'a [u8]>>,
    file_len: usize,
}

impl<'a> Npz<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self, NpyError> {
        let archive = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| NpyError::Zip(format!("{e} ({} bytes)", bytes.len())))?;
        Ok(Npz {
            archive,
            file_len: bytes.len(),
        })
    }

    /// The arrays' keys (entry names less `.npy`), in archive order.
    pub fn keys(&self) -> Vec<String> {
        self.archive
            .file_names()
            .filter_map(|name| name.strip_suffix(".npy"))
            .map(str::to_string)
            .collect()
    }

    /// The array `key` (entry `<key>.npy`); `None` when there is no such entry.
    pub fn array(&mut self, key: &str) -> Result<Option<NpyArray>, NpyError> {
        let entry = format!("{key}.npy");
        let in_entry = |source: NpyError| NpyError::Entry {
            entry: entry.clone(),
            source: Box::new(source),
        };
        let bytes = match self.read_entry(&entry).map_err(in_entry)? {
            Some(bytes) => bytes,
            None => return Ok(None),
        };
        parse_npy(&bytes).map(Some).map_err(in_entry)
    }

    /// [`Npz::array`], where a missing entry is an error.
    pub fn require(&mut self, key: &str) -> Result<NpyArray, NpyError> {
        self.array(key)?
            .ok_or_else(|| NpyError::MissingEntry(format!("{key}.npy")))
    }

    pub(crate) fn read_entry(&mut self, name: &str) -> Result<Option<Vec<u8>>, NpyError> {
        let entry = match self.archive.by_name(name) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(NpyError::Zip(e.to_string())),
        };
        // The declared size drives the allocation, so bound it first: stored data fits
        // in the file, and deflate expands at most about 1032:1.
        let declared = entry.size();
        let max = if entry.compression() == zip::CompressionMethod::Stored {
            self.file_len as u64
        } else {
            (self.file_len as u64).saturating_mul(1032)
        };
        if declared > max {
            return Err(NpyError::Zip(format!(
                "declares {declared} bytes in a {}-byte file",
                self.file_len
            )));
        }
        let mut data = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
        // One byte more than declared, so the reader reaches its end (where the CRC is
        // checked) and an overlong entry shows.
        entry
            .take(declared.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| NpyError::Zip(e.to_string()))?;
        if data.len() as u64 != declared {
            return Err(NpyError::Zip(format!(
                "declares {declared} bytes but holds {}",
                data.len()
            )));
        }
        Ok(Some(data))
    }
}

/// Builders of `.npy`/`.npz` bytes for tests, here and in the rooms that read arrays.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::{Cursor, Write};

    use super::MAGIC;

    /// A `.npy` file with the dict literal `header`, padded as numpy pads it.
    pub fn npy(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let prefix = if version == 1 { 10 } else { 12 };
        let mut text = header.to_string();
        while !(prefix + text.len() + 1).is_multiple_of(64) {
            text.push(' ');
        }
        text.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend([version, 0]);
        if version == 1 {
            out.extend((text.len() as u16).to_le_bytes());
        } else {
            out.extend((text.len() as u32).to_le_bytes());
        }
        out.extend(text.as_bytes());
        out.extend(data);
        out
    }

    pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// A stored `.npz` of `(key, .npy bytes)`.
    pub fn npz(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (key, bytes) in entries {
            writer.start_file(format!("{key}.npy"), options).unwrap();
            writer.write_all(bytes).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    /// A 0-d `<U` array, as numpy.savez stores a string.
    pub fn unicode_npy(text: &str) -> Vec<u8> {
        let ucs4: Vec<u8> = text
            .chars()
            .flat_map(|c| (c as u32).to_le_bytes())
            .collect();
        let header = format!(
            "{{'descr': '<U{}', 'fortran_order': False, 'shape': (), }}",
            text.chars().count()
        );
        npy(1, &header, &ucs4)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn npy_headers_parse_in_versions_1_2_and_3() {
        let a = parse_npy(&npy(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            &f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ))
        .unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, NpyData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));

        let b = parse_npy(&npy(
            2,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
            &2.5f64.to_le_bytes(),
        ))
        .unwrap();
        assert_eq!((b.shape.len(), b.to_f64()), (0, Some(vec![2.5])));

        let c = parse_npy(&npy(
            3,
            "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
            &[(-7i64).to_le_bytes(), 641i64.to_le_bytes()].concat(),
        ))
        .unwrap();
        assert_eq!(c.data, NpyData::Int(vec![-7, 641]));

        // Narrow integers widen (with sign), bools, Python 2 longs and double quotes.
        let d = parse_npy(&npy(
            1,
            "{\"descr\": \"<i2\", \"fortran_order\": False, \"shape\": (2L,)}",
            &[(-2i16).to_le_bytes(), 300i16.to_le_bytes()].concat(),
        ))
        .unwrap();
        assert_eq!(d.data, NpyData::Int(vec![-2, 300]));
        let e = parse_npy(&npy(
            1,
            "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
            &[1, 0, 1],
        ))
        .unwrap();
        assert_eq!(e.data, NpyData::Bool(vec![true, false, true]));

        // What numpy.savez makes of gandissect's `constructor` string.
        let text = "netdissect.runningstats.RunningQuantile()";
        let mut ucs4: Vec<u8> = text
            .chars()
            .flat_map(|c| (c as u32).to_le_bytes())
            .collect();
        ucs4.extend([0; 8]); // padded to <U43
        let f = parse_npy(&npy(
            1,
            "{'descr': '<U43', 'fortran_order': False, 'shape': (), }",
            &ucs4,
        ))
        .unwrap();
        assert_eq!(f.as_str_scalar(), Some(text));
    }

    /// Whether an error is the expected one.
    type ErrorCheck = fn(&NpyError) -> bool;

    #[test]
    fn malformed_npy_is_a_named_error_not_a_panic() {
        let header = |h: &str, data: &[u8]| npy(1, h, data);
        let good = header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            &[0; 24],
        );
        let mut cases: Vec<(Vec<u8>, ErrorCheck)> = vec![
            (b"PK\x03\x04 not npy".to_vec(), |e| *e == NpyError::Magic),
            (
                [&good[..6], &[4, 0], &good[8..]].concat(),
                |e| matches!(e, NpyError::Version { major: 4, .. }),
            ),
            (good[..40].to_vec(), |e| {
                matches!(e, NpyError::Truncated { .. })
            }),
            (header("['descr', '<f4']", &[]), |e| {
                matches!(e, NpyError::Header { .. })
            }),
            (header("{'descr': '<f4', 'fortran_order': False}", &[]), |e| {
                e.to_string().contains("no `shape`")
            }),
            (
                header(
                    "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
                    &[0; 24],
                ),
                |e| *e == NpyError::FortranOrder,
            ),
            (
                header(
                    "{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }",
                    &[0; 24],
                ),
                |e| e.to_string().contains("big-endian"),
            ),
            (
                header(
                    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }",
                    &[0; 24],
                ),
                |e| e.to_string().contains("structured"),
            ),
            (
                header(
                    "{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }",
                    &[0; 24],
                ),
                |e| matches!(e, NpyError::Dtype(_)),
            ),
            // A shape that does not match the data: too little, too much.
            (
                header(
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                    &[0; 20],
                ),
                |e| matches!(e, NpyError::DataSize { needed: 24, found: 20, .. }),
            ),
            (
                header(
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
                    &[0; 24],
                ),
                |e| matches!(e, NpyError::DataSize { .. }),
            ),
            // Absurd shapes fail before anything is allocated.
            (
                header(
                    "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
                    &[0; 8],
                ),
                |e| matches!(e, NpyError::TooLarge(_)),
            ),
            (
                header(
                    "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000000000000,), }",
                    &[0; 8],
                ),
                |e| matches!(e, NpyError::Header { .. }),
            ),
            (
                header(
                    "{'descr': '<U100000000000000000', 'fortran_order': False, 'shape': (100,), }",
                    &[0; 8],
                ),
                |e| matches!(e, NpyError::TooLarge(_)),
            ),
            // An object array whose payload is not a pickle.
            (
                header(
                    "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }",
                    b"\x80\x04garbage",
                ),
                |e| matches!(e, NpyError::Pickle(_)),
            ),
        ];
        for cut in 0..good.len() {
            cases.push((good[..cut].to_vec(), |_| true));
        }
        for (i, (bytes, check)) in cases.iter().enumerate() {
            match parse_npy(bytes) {
                Ok(a) => panic!("case {i}: parsed {a:?}"),
                Err(e) => assert!(check(&e), "case {i}: wrong error {e}"),
            }
        }
        parse_npy(&good).unwrap();
    }

    #[test]
    fn pickled_fortran_order_array_from_numpy1_protocol2_reads_row_major() {
        // numpy 1 with protocol 2: pickle.dumps(np.asfortranarray(
        //     np.arange(6, dtype=np.float32).reshape(2, 3)), protocol=2)
        // (numpy 2's output with `numpy._core` renamed `numpy.core`): module
        // `numpy.core.multiarray`, raw bytes as _codecs.encode(text, 'latin1'),
        // is_fortran True, so the bytes are column-major.
        let bytes = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02c_codecs\nencode\nq\x03X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x87q\x08Rq\t(K\x01K\x02K\x03\x86q\ncnumpy\ndtype\nq\x0bX\x02\x00\x00\x00f4q\x0c\x89\x88\x87q\rRq\x0e(K\x03X\x01\x00\x00\x00<q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x10b\x88h\x03X\x1b\x00\x00\x00\x00\x00\x00\x00\x00\x00@@\x00\x00\xc2\x80?\x00\x00\xc2\x80@\x00\x00\x00@\x00\x00\xc2\xa0@q\x11h\x05\x86q\x12Rq\x13tq\x14b.";
        let (value, _) = pickle::parse(bytes).unwrap();
        let array = decode_pickled_array(&value, true).unwrap();
        assert_eq!(array.shape, vec![2, 3]);
        assert_eq!(array.data, NpyData::F32(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));

        // pickle.dumps(np.array([1.5, -2.0], dtype='>f8'), protocol=3), numpy 2.
        let big = b"\x80\x03cnumpy._core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02C\x01bq\x03\x87q\x04Rq\x05(K\x01K\x02\x85q\x06cnumpy\ndtype\nq\x07X\x02\x00\x00\x00f8q\x08\x89\x88\x87q\tRq\n(K\x03X\x01\x00\x00\x00>q\x0bNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x0cb\x89C\x10?\xf8\x00\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x00q\rtq\x0eb.";
        let (value, _) = pickle::parse(big).unwrap();
        let err = decode_pickled_array(&value, true).unwrap_err();
        assert!(err.to_string().contains("big-endian"), "{err}");
    }
}
