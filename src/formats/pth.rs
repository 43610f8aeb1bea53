//! Reads PyTorch `torch.save` checkpoints (state dicts) without Python or
//! libtorch, so the server can load weights and check them before torch is
//! involved.
//!
//! # File formats
//!
//! **Zip** (torch ≥ 1.6, starts with `PK\x03\x04`). One top folder whose
//! name varies (`archive/` when saved to a buffer, the file stem when saved
//! to a path) holding:
//! * `data.pkl`: the pickled object. Each tensor is
//!   `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
//!   requires_grad, backward_hooks[, metadata])`, where `storage` is a
//!   persistent id `('storage', torch.FloatStorage, key, location, numel)`.
//! * `data/<key>`: the raw bytes of each storage (torch stores entries
//!   uncompressed; deflated entries are read too, for re-zipped files).
//! * `byteorder` (`little`/`big`; absent in old files, meaning little).
//!
//! **Legacy** (before 1.6, `_use_new_zipfile_serialization=False`): pickles
//! back to back: the magic number `0x1950a86a20f9469cfc6c`, the protocol
//! version 1001, a `sys_info` dict (`little_endian`, type sizes), the object
//! (persistent ids `('storage', type, key, location, numel, view_metadata)`,
//! where `view_metadata` is `None` or `(view_key, offset, size)` of a slice
//! of the root storage), and the list of storage keys. Then, for each key in
//! that list: a little-endian `u64` element count and the storage bytes.
//!
//! Torch 2.x still names storage types by the legacy typed classes
//! (`torch.FloatStorage`, `torch.BFloat16Storage`, ...), which give the
//! dtype. A `state_dict()` is a `collections.OrderedDict`: pickled as
//! `REDUCE(OrderedDict, ())` + `SETITEMS`, then `BUILD` with
//! `{'_metadata': ...}` (ignored here). `nn.Parameter`s are wrapped in
//! `torch._utils._rebuild_parameter(tensor, requires_grad, hooks)`.
//!
//! Tensors may be views (offset and strides into a shared storage); they
//! are copied out into contiguous row-major buffers, with every index
//! checked against the storage. Corrupt or truncated files give a
//! [`PthError`] naming the part involved, never a panic.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use super::pickle::{self, PickleError, Value};

/// Element type of a tensor, as given by its storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn elem_size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The torch dtype name (`float32`, `bfloat16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// From a typed storage class name (`FloatStorage`, ...).
    fn from_storage_name(name: &str) -> Option<DType> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }
}

/// Element size of storage types we cannot return as tensors but must
/// still step over in a legacy file's data section.
fn other_storage_elem_size(name: &str) -> Option<usize> {
    Some(match name {
        "ComplexDoubleStorage" => 16,
        "ComplexFloatStorage" => 8,
        "ComplexHalfStorage" | "QInt32Storage" => 4,
        "QInt8Storage" | "QUInt8Storage" | "QUInt4x2Storage" | "QUInt2x4Storage" => 1,
        _ => return None,
    })
}

/// A tensor copied out of a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Contiguous, row-major, little-endian; exactly `numel * elem_size`.
    pub data: Vec<u8>,
}

impl RawTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Why a checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PthError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Empty, or neither a zip archive nor a legacy torch pickle.
    #[error("not a PyTorch checkpoint: {reason}")]
    NotATorchFile { reason: String },
    /// The file ends inside `what`. `needed` counts bytes from the start of
    /// that part and is a lower bound where the real size is not recorded.
    #[error("checkpoint is truncated in {what}: needs at least {needed} bytes, only {available} present")]
    Truncated {
        what: String,
        needed: u64,
        available: u64,
    },
    /// A pickle inside the checkpoint is malformed (`part` names it).
    #[error("cannot unpickle {part}: {source}")]
    Pickle {
        part: String,
        #[source]
        source: PickleError,
    },
    /// The zip reader failed on `part` (e.g. CRC mismatch, compressed entry).
    #[error("bad zip archive ({part}): {source}")]
    Zip {
        part: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{part} says byte order '{found}'; only little-endian checkpoints are supported")]
    UnsupportedByteOrder { part: String, found: String },
    #[error("unsupported legacy checkpoint protocol version {found} (expected 1001)")]
    UnsupportedVersion { found: String },
    #[error("storage '{key}' (used by {used_by}) is missing from the checkpoint")]
    MissingStorage { key: String, used_by: String },
    #[error("{context}: unsupported storage type '{storage_type}'")]
    UnsupportedDType {
        storage_type: String,
        context: String,
    },
    /// A tensor's rebuild arguments are malformed or out of its storage.
    #[error("tensor '{key}': {reason}")]
    BadTensor { key: String, reason: String },
    #[error("malformed checkpoint: {what}: {reason}")]
    BadFormat { what: String, reason: String },
}

/// Reads the tensors of a state dict saved with `torch.save`, in file order.
/// See [`read_state_dict_bytes`].
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, RawTensor)>, PthError> {
    let bytes = std::fs::read(path).map_err(|source| PthError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_state_dict_bytes(&bytes)
}

/// Reads the tensors of a state dict from checkpoint bytes (zip or legacy
/// format). The top object must be a dict/`OrderedDict`, or a dict with a
/// `state_dict` entry holding one. Entries whose value is not a tensor are
/// skipped; tensor kinds we cannot represent (quantized, sparse, ...) are
/// errors rather than silently dropped.
pub fn read_state_dict_bytes(bytes: &[u8]) -> Result<Vec<(String, RawTensor)>, PthError> {
    if bytes.is_empty() {
        return Err(PthError::NotATorchFile {
            reason: "the file is empty".into(),
        });
    }
    if bytes.starts_with(ZIP_MAGIC) {
        read_zip(bytes)
    } else {
        read_legacy(bytes)
    }
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// `pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)`: how every legacy
/// checkpoint starts.
const LEGACY_MAGIC_PICKLE: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
const LEGACY_PROTOCOL_VERSION: i64 = 1001;

/// A tensor's storage as named by its persistent id.
#[derive(Debug, Clone)]
struct StorageRef {
    key: String,
    /// e.g. `torch.FloatStorage`.
    storage_type: String,
    /// The class name alone, e.g. `FloatStorage`.
    type_name: String,
    /// Legacy views: (element offset, element count) into the root storage.
    view: Option<(usize, usize)>,
}

/// How a tensor lies in its storage.
#[derive(Debug)]
struct TensorSpec {
    storage: StorageRef,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

// ----- zip format -----

fn read_zip(bytes: &[u8]) -> Result<Vec<(String, RawTensor)>, PthError> {
    let mut archive = match zip::ZipArchive::new(Cursor::new(bytes)) {
        Ok(a) => a,
        Err(source) => {
            // The zip reader only says "no central directory"; find out
            // whether the file was cut short, which is the common case.
            return Err(diagnose_zip(bytes).unwrap_or(PthError::Zip {
                part: "archive".into(),
                source,
            }));
        }
    };
    let top = archive
        .file_names()
        .find_map(|name| {
            let (top, rest) = name.split_once('/')?;
            (rest == "data.pkl").then(|| top.to_owned())
        })
        .ok_or_else(|| PthError::NotATorchFile {
            reason: "zip archive has no <folder>/data.pkl".into(),
        })?;

    let byteorder_part = format!("{top}/byteorder");
    if let Some(order) = read_entry(&mut archive, &byteorder_part, bytes.len())? {
        let order = String::from_utf8_lossy(&order).trim().to_owned();
        if order != "little" {
            return Err(PthError::UnsupportedByteOrder {
                part: byteorder_part,
                found: order,
            });
        }
    }

    let pkl_part = format!("{top}/data.pkl");
    let pkl =
        read_entry(&mut archive, &pkl_part, bytes.len())?.ok_or_else(|| PthError::BadFormat {
            what: pkl_part.clone(),
            reason: "listed but unreadable".into(),
        })?;
    let (root, _) = pickle::parse(&pkl).map_err(|e| pickle_error(&pkl_part, e))?;

    let specs = state_dict_specs(&root)?;
    // Shared storages are read once.
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for (name, _, spec) in &specs {
        let key = spec.storage.key.as_str();
        if storages.contains_key(key) {
            continue;
        }
        let part = format!("{top}/data/{key}");
        let data = read_entry(&mut archive, &part, bytes.len())?.ok_or_else(|| {
            PthError::MissingStorage {
                key: key.to_owned(),
                used_by: format!("tensor '{name}'"),
            }
        })?;
        storages.insert(key.to_owned(), data);
    }
    materialize_all(specs, |key| storages.get(key).map(Vec::as_slice))
}

/// Reads a whole zip entry; `Ok(None)` if there is no such entry.
fn read_entry(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    file_len: usize,
) -> Result<Option<Vec<u8>>, PthError> {
    let zip_err = |source| PthError::Zip {
        part: name.to_owned(),
        source,
    };
    let entry = match archive.by_name(name) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(zip_err(e)),
    };
    // The declared size drives the allocation, so check it first: stored
    // data cannot exceed the file, and deflate expands at most ~1032:1.
    let declared = entry.size();
    let max = if entry.compression() == zip::CompressionMethod::Stored {
        file_len as u64
    } else {
        (file_len as u64).saturating_mul(1032)
    };
    if declared > max {
        return Err(PthError::BadFormat {
            what: format!("zip entry '{name}'"),
            reason: format!("declares {declared} bytes in a {file_len}-byte file"),
        });
    }
    let mut data = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
    // One byte more than declared, so the reader reaches its end (where
    // the CRC is checked) and an overlong entry is noticed.
    entry
        .take(declared.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| zip_err(zip::result::ZipError::Io(e)))?;
    if data.len() as u64 != declared {
        return Err(PthError::BadFormat {
            what: format!("zip entry '{name}'"),
            reason: format!("declares {declared} bytes but holds {}", data.len()),
        });
    }
    Ok(Some(data))
}

/// Walks the local headers of a zip that the zip reader rejected, to report
/// which entry (or the central directory) was cut off. `None` when the file
/// does not look truncated.
fn diagnose_zip(bytes: &[u8]) -> Option<PthError> {
    const LOCAL: u32 = 0x0403_4b50;
    const CENTRAL: u32 = 0x0201_4b50;
    const EOCD64: u32 = 0x0606_4b50;
    const EOCD64_LOCATOR: u32 = 0x0706_4b50;
    const EOCD: u32 = 0x0605_4b50;
    let u16_at = |p: usize| -> Option<usize> {
        let b = bytes.get(p..p.checked_add(2)?)?;
        Some(usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u32_at = |p: usize| -> Option<u32> {
        let b = bytes.get(p..p.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |p: usize| -> Option<u64> {
        let b = bytes.get(p..p.checked_add(8)?)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    };
    let truncated = |what: String, start: usize, end: u64| PthError::Truncated {
        what,
        needed: end.saturating_sub(start as u64),
        available: (bytes.len() - start.min(bytes.len())) as u64,
    };
    let len = bytes.len() as u64;
    let mut pos = 0usize;
    let mut central_start = None;
    loop {
        let Some(sig) = u32_at(pos) else {
            let start = central_start.unwrap_or(pos);
            return Some(truncated(
                "zip central directory".into(),
                start,
                (pos as u64).max(start as u64) + 22,
            ));
        };
        // Offset just past the record at `pos`, if its header is complete.
        let record_end: Option<u64> = match sig {
            LOCAL if central_start.is_none() => {
                let flags = u16_at(pos + 6);
                let header = (|| {
                    let csize = u64::from(u32_at(pos + 18)?);
                    let name_len = u16_at(pos + 26)?;
                    let extra_len = u16_at(pos + 28)?;
                    Some((csize, name_len, extra_len))
                })();
                let Some((csize, name_len, extra_len)) = header else {
                    return Some(truncated("zip local header".into(), pos, pos as u64 + 30));
                };
                let name_start = pos + 30;
                let Some(name) = bytes.get(name_start..name_start + name_len) else {
                    let end = (name_start + name_len + extra_len) as u64;
                    return Some(truncated("zip local header".into(), pos, end));
                };
                let name = String::from_utf8_lossy(name).into_owned();
                let data_start = (name_start + name_len + extra_len) as u64;
                if flags.unwrap_or(0) & 0x08 != 0 {
                    // Sizes follow the data in a descriptor (torch writes
                    // entries this way); only stored data can be scanned.
                    if u16_at(pos + 8) != Some(0) {
                        return None;
                    }
                    let start = usize::try_from(data_start.min(len)).unwrap_or(bytes.len());
                    match find_data_descriptor(bytes, start) {
                        Some(end) => Some(end as u64),
                        None => {
                            let at_least = len.saturating_sub(data_start) + 16;
                            return Some(truncated(
                                format!("zip entry '{name}'"),
                                start,
                                start as u64 + at_least,
                            ));
                        }
                    }
                } else {
                    let end = data_start + csize;
                    if end > len {
                        let start = usize::try_from(data_start.min(len)).unwrap_or(bytes.len());
                        return Some(truncated(format!("zip entry '{name}'"), start, end));
                    }
                    Some(end)
                }
            }
            CENTRAL => {
                central_start.get_or_insert(pos);
                (|| {
                    let extra = u16_at(pos + 28)? + u16_at(pos + 30)? + u16_at(pos + 32)?;
                    Some((pos + 46 + extra) as u64)
                })()
                .or(Some(pos as u64 + 46 + 1))
            }
            EOCD64 => {
                central_start.get_or_insert(pos);
                u64_at(pos + 4)
                    .map(|n| (pos as u64).saturating_add(12).saturating_add(n))
                    .or(Some(pos as u64 + 56))
            }
            EOCD64_LOCATOR => {
                central_start.get_or_insert(pos);
                Some(pos as u64 + 20)
            }
            EOCD => {
                let start = *central_start.get_or_insert(pos);
                let end = u16_at(pos + 20).map_or(pos as u64 + 22, |c| (pos + 22 + c) as u64);
                if end > len {
                    return Some(truncated("zip central directory".into(), start, end));
                }
                // Complete archive: the problem is something else.
                return None;
            }
            _ => return None,
        };
        let end = record_end?;
        if end > len {
            let start = central_start.unwrap_or(pos);
            return Some(truncated("zip central directory".into(), start, end));
        }
        pos = usize::try_from(end).ok()?;
    }
}

/// End of the data descriptor (`PK\x07\x08`, crc, sizes) that closes
/// stored data starting at `data_start`: the first one whose recorded
/// sizes equal the distance from `data_start`.
fn find_data_descriptor(bytes: &[u8], data_start: usize) -> Option<usize> {
    const SIG: &[u8] = b"PK\x07\x08";
    let mut from = data_start;
    while let Some(i) = bytes.get(from..)?.windows(4).position(|w| w == SIG) {
        let p = from + i;
        let size = (p - data_start) as u64;
        let field = |at: usize, width: usize| -> Option<u64> {
            let b = bytes.get(p + at..p + at + width)?;
            Some(
                b.iter()
                    .rev()
                    .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
            )
        };
        if field(8, 4) == Some(size) && field(12, 4) == Some(size) {
            return Some(p + 16);
        }
        if field(8, 8) == Some(size) && field(16, 8) == Some(size) {
            return Some(p + 24); // zip64 descriptor
        }
        from = p + 1;
    }
    None
}

// ----- legacy format -----

fn read_legacy(bytes: &[u8]) -> Result<Vec<(String, RawTensor)>, PthError> {
    if !bytes.starts_with(LEGACY_MAGIC_PICKLE) {
        if LEGACY_MAGIC_PICKLE.starts_with(bytes) {
            return Err(PthError::Truncated {
                what: "legacy magic number".into(),
                needed: LEGACY_MAGIC_PICKLE.len() as u64,
                available: bytes.len() as u64,
            });
        }
        return Err(PthError::NotATorchFile {
            reason: "neither a zip archive nor a legacy torch pickle (bad magic number)".into(),
        });
    }
    let mut pos = LEGACY_MAGIC_PICKLE.len();
    let mut next_pickle = |part: &str| -> Result<Value, PthError> {
        let rest = bytes.get(pos..).unwrap_or_default();
        let (value, used) = pickle::parse(rest).map_err(|e| pickle_error(part, e))?;
        pos += used;
        Ok(value)
    };

    let version = next_pickle("legacy protocol version")?;
    if version.as_int() != Some(LEGACY_PROTOCOL_VERSION) {
        return Err(PthError::UnsupportedVersion {
            found: format!("{version:?}"),
        });
    }
    let sys_info = next_pickle("legacy sys_info")?;
    if sys_info.get("little_endian").and_then(Value::as_bool) == Some(false) {
        return Err(PthError::UnsupportedByteOrder {
            part: "legacy sys_info".into(),
            found: "big".into(),
        });
    }
    let root = next_pickle("legacy object pickle")?;
    let keys_value = next_pickle("legacy storage key list")?;

    // Element sizes are not in the data section; they come from the
    // storage types named by the object pickle's persistent ids.
    let mut storage_types: HashMap<String, StorageRef> = HashMap::new();
    collect_storage_refs(&root, &mut storage_types);

    let keys = keys_value.as_seq().ok_or_else(|| PthError::BadFormat {
        what: "legacy storage key list".into(),
        reason: format!("is a {}, expected a list", keys_value.type_name()),
    })?;
    let mut ranges: HashMap<String, (usize, usize)> = HashMap::new();
    for key in keys {
        let key = key.as_text().ok_or_else(|| PthError::BadFormat {
            what: "legacy storage key list".into(),
            reason: format!("contains a {}, expected str", key.type_name()),
        })?;
        let sref = storage_types.get(key).ok_or_else(|| PthError::BadFormat {
            what: format!("legacy storage '{key}'"),
            reason: "listed in the data section but not referenced by any object".into(),
        })?;
        let elem_size = DType::from_storage_name(&sref.type_name)
            .map(DType::elem_size)
            .or_else(|| other_storage_elem_size(&sref.type_name))
            .ok_or_else(|| PthError::UnsupportedDType {
                storage_type: sref.storage_type.clone(),
                context: format!("legacy storage '{key}'"),
            })?;
        let header = bytes.get(pos..pos + 8).ok_or_else(|| PthError::Truncated {
            what: format!("legacy storage '{key}' size header"),
            needed: 8,
            available: bytes.len().saturating_sub(pos) as u64,
        })?;
        let mut count = [0u8; 8];
        count.copy_from_slice(header);
        let count = u64::from_le_bytes(count);
        pos += 8;
        let available = bytes.len() - pos;
        let nbytes = count.checked_mul(elem_size as u64);
        match nbytes.and_then(|n| usize::try_from(n).ok()) {
            Some(n) if n <= available => {
                ranges.insert(key.to_owned(), (pos, pos + n));
                pos += n;
            }
            _ => {
                return Err(PthError::Truncated {
                    what: format!("legacy storage '{key}' data"),
                    needed: nbytes.unwrap_or(u64::MAX),
                    available: available as u64,
                })
            }
        }
    }

    let specs = state_dict_specs(&root)?;
    materialize_all(specs, |key| {
        let (start, end) = ranges.get(key)?;
        bytes.get(*start..*end)
    })
}

/// Finds every `('storage', ...)` persistent id in the tree.
fn collect_storage_refs(value: &Value, out: &mut HashMap<String, StorageRef>) {
    let visit_all = |items: &[Value], out: &mut HashMap<String, StorageRef>| {
        for item in items {
            collect_storage_refs(item, out);
        }
    };
    match value {
        Value::PersistentId(pid) => {
            if let Ok(sref) = parse_storage_pid(pid) {
                out.entry(sref.key.clone()).or_insert(sref);
            }
        }
        Value::Tuple(items) | Value::List(items) | Value::Set(items) | Value::FrozenSet(items) => {
            visit_all(items, out)
        }
        Value::Dict(pairs) => {
            for (k, v) in pairs {
                collect_storage_refs(k, out);
                collect_storage_refs(v, out);
            }
        }
        Value::Object(o) => {
            collect_storage_refs(&o.callable, out);
            collect_storage_refs(&o.args, out);
            for v in o.kwargs.iter().chain(o.state.iter()) {
                collect_storage_refs(v, out);
            }
            visit_all(&o.list_items, out);
            for (k, v) in &o.dict_items {
                collect_storage_refs(k, out);
                collect_storage_refs(v, out);
            }
        }
        Value::Build { obj, state } => {
            collect_storage_refs(obj, out);
            collect_storage_refs(state, out);
        }
        _ => {}
    }
}

// ----- shared: state dict and tensors -----

fn pickle_error(part: &str, e: PickleError) -> PthError {
    match e {
        PickleError::Truncated {
            needed, available, ..
        } => PthError::Truncated {
            what: part.to_owned(),
            needed,
            available: available as u64,
        },
        PickleError::MissingStop { .. } => PthError::Truncated {
            what: format!("{part} (no STOP opcode)"),
            needed: 1,
            available: 0,
        },
        source => PthError::Pickle {
            part: part.to_owned(),
            source,
        },
    }
}

/// The state dict inside the top object.
fn state_dict_items(root: &Value) -> Result<&[(Value, Value)], PthError> {
    let items = root.dict_items().ok_or_else(|| PthError::BadFormat {
        what: "top-level object".into(),
        reason: format!("is a {}, expected a dict or OrderedDict", root.type_name()),
    })?;
    // Training checkpoints wrap the weights: {'state_dict': ..., 'epoch': ...}.
    if let Some(inner) = root.get("state_dict").and_then(Value::dict_items) {
        return Ok(inner);
    }
    Ok(items)
}

/// Finds the tensors of the state dict, in order, without touching data.
fn state_dict_specs(root: &Value) -> Result<Vec<(String, DType, TensorSpec)>, PthError> {
    let mut out = Vec::new();
    for (key, value) in state_dict_items(root)? {
        let Some(name) = key.as_text() else {
            continue;
        };
        let Some(spec) = tensor_spec(value, name)? else {
            continue;
        };
        let dtype = DType::from_storage_name(&spec.storage.type_name).ok_or_else(|| {
            PthError::UnsupportedDType {
                storage_type: spec.storage.storage_type.clone(),
                context: format!("tensor '{name}'"),
            }
        })?;
        out.push((name.to_owned(), dtype, spec));
    }
    Ok(out)
}

/// Copies every tensor out of its storage (looked up by key).
fn materialize_all<'s>(
    entries: Vec<(String, DType, TensorSpec)>,
    storage: impl Fn(&str) -> Option<&'s [u8]>,
) -> Result<Vec<(String, RawTensor)>, PthError> {
    let mut out = Vec::with_capacity(entries.len());
    for (name, dtype, t) in entries {
        let key = &t.storage.key;
        let mut data = storage(key).ok_or_else(|| PthError::MissingStorage {
            key: key.clone(),
            used_by: format!("tensor '{name}'"),
        })?;
        if let Some((offset, len)) = t.storage.view {
            let elem = dtype.elem_size();
            let range = offset
                .checked_mul(elem)
                .zip(offset.checked_add(len).and_then(|e| e.checked_mul(elem)));
            data = range
                .and_then(|(start, end)| data.get(start..end))
                .ok_or_else(|| PthError::BadTensor {
                    key: name.clone(),
                    reason: format!(
                        "storage view [{offset}, +{len}) lies outside storage '{key}' of {} elements",
                        data.len() / elem
                    ),
                })?;
        }
        let bytes = materialize(data, dtype, t.offset, &t.shape, &t.stride).map_err(|reason| {
            PthError::BadTensor {
                key: name.clone(),
                reason: format!("{reason} (storage '{key}')"),
            }
        })?;
        out.push((
            name,
            RawTensor {
                dtype,
                shape: t.shape,
                data: bytes,
            },
        ));
    }
    Ok(out)
}

/// Recognizes a pickled tensor; `Ok(None)` for values that are not tensors.
fn tensor_spec(value: &Value, name: &str) -> Result<Option<TensorSpec>, PthError> {
    let Some(obj) = value.as_object() else {
        return Ok(None);
    };
    rebuild_call(&obj.callable, obj.args().unwrap_or_default(), name, 0)
}

fn rebuild_call(
    callable: &Value,
    args: &[Value],
    name: &str,
    depth: usize,
) -> Result<Option<TensorSpec>, PthError> {
    let bad = |reason: String| PthError::BadTensor {
        key: name.to_owned(),
        reason,
    };
    let Some((module, func)) = callable.global_name() else {
        return Ok(None);
    };
    if depth > 8 {
        return Err(bad("tensor wrappers nested too deeply".into()));
    }
    match (module, func) {
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
            rebuild_tensor(args, name).map(Some)
        }
        // nn.Parameter: (data, requires_grad, backward_hooks[, state]).
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            let inner = args
                .first()
                .and_then(Value::as_object)
                .ok_or_else(|| bad("parameter does not wrap a tensor".into()))?;
            match rebuild_call(
                &inner.callable,
                inner.args().unwrap_or_default(),
                name,
                depth + 1,
            )? {
                Some(spec) => Ok(Some(spec)),
                None => Err(bad("parameter does not wrap a tensor".into())),
            }
        }
        // Tensor subclasses: (func, new_type, args, state).
        ("torch._tensor", "_rebuild_from_type_v2" | "_rebuild_from_type") => {
            let (Some(func), Some(inner_args)) = (args.first(), args.get(2)) else {
                return Err(bad(format!("{module}.{func} has too few arguments")));
            };
            rebuild_call(
                func,
                inner_args.as_seq().unwrap_or_default(),
                name,
                depth + 1,
            )
        }
        ("torch._utils", other) if other.starts_with("_rebuild") => Err(bad(format!(
            "unsupported tensor kind {module}.{other} (only dense CPU-layout tensors)"
        ))),
        _ => Ok(None),
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`.
fn rebuild_tensor(args: &[Value], name: &str) -> Result<TensorSpec, PthError> {
    let bad = |reason: String| PthError::BadTensor {
        key: name.to_owned(),
        reason,
    };
    let [storage, offset, size, stride, ..] = args else {
        return Err(bad(format!(
            "_rebuild_tensor needs 4+ arguments, got {}",
            args.len()
        )));
    };
    let pid = match storage {
        Value::PersistentId(pid) => pid,
        other => {
            return Err(bad(format!(
                "storage argument is a {}, expected a persistent id",
                other.type_name()
            )))
        }
    };
    let storage = parse_storage_pid(pid).map_err(bad)?;
    let offset = to_usize(offset).ok_or_else(|| bad(format!("bad storage offset {offset:?}")))?;
    let dims = |v: &Value, what: &str| -> Result<Vec<usize>, PthError> {
        v.as_seq()
            .and_then(|items| items.iter().map(to_usize).collect::<Option<Vec<_>>>())
            .ok_or_else(|| bad(format!("bad {what} {v:?}")))
    };
    let shape = dims(size, "size")?;
    let stride = dims(stride, "stride")?;
    Ok(TensorSpec {
        storage,
        offset,
        shape,
        stride,
    })
}

fn to_usize(v: &Value) -> Option<usize> {
    v.as_int().and_then(|i| usize::try_from(i).ok())
}

/// `('storage', storage_type, key, location, numel[, view_metadata])`.
fn parse_storage_pid(pid: &Value) -> Result<StorageRef, String> {
    let items = pid
        .as_seq()
        .ok_or_else(|| format!("persistent id is a {}, expected a tuple", pid.type_name()))?;
    let [tag, storage_type, key, _location, _numel, rest @ ..] = items else {
        return Err(format!(
            "storage persistent id has {} fields, expected 5 or 6",
            items.len()
        ));
    };
    if tag.as_text() != Some("storage") {
        return Err(format!("persistent id kind {tag:?}, expected 'storage'"));
    }
    let (module, type_name) = storage_type
        .global_name()
        .ok_or_else(|| format!("storage type is a {}", storage_type.type_name()))?;
    let key = key
        .as_text()
        .ok_or_else(|| format!("storage key is a {}", key.type_name()))?;
    let view = match rest.first() {
        None | Some(Value::None) => None,
        Some(meta) => {
            // (view_key, offset, size), in elements of the root storage.
            let parts = meta.as_seq().unwrap_or_default();
            match (
                parts.get(1).and_then(to_usize),
                parts.get(2).and_then(to_usize),
            ) {
                (Some(offset), Some(len)) => Some((offset, len)),
                _ => return Err(format!("bad storage view metadata {meta:?}")),
            }
        }
    };
    Ok(StorageRef {
        key: key.to_owned(),
        storage_type: format!("{module}.{type_name}"),
        type_name: type_name.to_owned(),
        view,
    })
}

/// Refuse to blow a tiny storage up into a huge tensor (stride-0
/// `expand`ed tensors are legal and saved as such) beyond this size.
const MAX_EXPANDED_BYTES: usize = 1 << 30;

/// Copies the strided view `(offset, shape, stride)` of `storage` into a
/// contiguous row-major buffer. Every element index is bounds-checked.
fn materialize(
    storage: &[u8],
    dtype: DType,
    offset: usize,
    shape: &[usize],
    stride: &[usize],
) -> Result<Vec<u8>, String> {
    let elem = dtype.elem_size();
    if shape.len() != stride.len() {
        return Err(format!(
            "size {shape:?} and stride {stride:?} have different lengths"
        ));
    }
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("size {shape:?} overflows"))?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    let storage_numel = storage.len() / elem;
    let overflow = || format!("size {shape:?} with stride {stride:?} overflows");
    let last = shape
        .iter()
        .zip(stride)
        .try_fold(offset, |acc, (&d, &s)| {
            acc.checked_add((d - 1).checked_mul(s)?)
        })
        .ok_or_else(overflow)?;
    if last >= storage_numel {
        return Err(format!(
            "offset {offset}, size {shape:?}, stride {stride:?} reach element {last} \
             but the storage holds {storage_numel} elements"
        ));
    }
    let nbytes = numel.checked_mul(elem).ok_or_else(overflow)?;
    if nbytes > storage.len() && nbytes > MAX_EXPANDED_BYTES {
        return Err(format!(
            "expands a {}-byte storage to {nbytes} bytes; refusing",
            storage.len()
        ));
    }
    let out_of_range = || format!("element out of range of a {storage_numel}-element storage");

    if is_contiguous(shape, stride) {
        return storage
            .get(offset * elem..offset * elem + nbytes)
            .map(<[u8]>::to_vec)
            .ok_or_else(out_of_range);
    }

    // Odometer over the outer dims, inner loop over the last one.
    let ndim = shape.len();
    let (inner_len, inner_stride) = (shape[ndim - 1], stride[ndim - 1]);
    let mut out = Vec::with_capacity(nbytes);
    let mut index = vec![0usize; ndim - 1];
    let mut base = offset;
    loop {
        for i in 0..inner_len {
            let e = base + i * inner_stride;
            let bytes = storage
                .get(e * elem..(e + 1) * elem)
                .ok_or_else(out_of_range)?;
            out.extend_from_slice(bytes);
        }
        let mut dim = ndim - 1;
        loop {
            if dim == 0 {
                return Ok(out);
            }
            dim -= 1;
            index[dim] += 1;
            base += stride[dim];
            if index[dim] < shape[dim] {
                break;
            }
            base -= stride[dim] * shape[dim];
            index[dim] = 0;
        }
    }
}

/// Row-major contiguity; strides of size-1 dims do not matter.
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pth/", $name)
        };
    }

    fn load(path: &str) -> Vec<(String, RawTensor)> {
        read_state_dict(Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn fixture_bytes(path: &str) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    fn expected(group: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(fixture!("expected.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json[group].as_array().unwrap().clone()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn get<'a>(tensors: &'a [(String, RawTensor)], name: &str) -> &'a RawTensor {
        &tensors
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
            .1
    }

    fn f32s(t: &RawTensor) -> Vec<f32> {
        assert_eq!(t.dtype, DType::F32);
        t.data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// Asserts that `tensors` are exactly the expected group, in order.
    fn assert_matches_expected(tensors: &[(String, RawTensor)], group: &str) {
        let expected = expected(group);
        let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        let expected_names: Vec<&str> = expected
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, expected_names);
        for ((name, t), e) in tensors.iter().zip(&expected) {
            assert_eq!(t.dtype.name(), e["dtype"].as_str().unwrap(), "{name} dtype");
            let shape: Vec<usize> = e["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape, shape, "{name} shape");
            assert_eq!(hex(&t.data), e["hex"].as_str().unwrap(), "{name} data");
            assert_eq!(t.data.len(), t.numel() * t.dtype.elem_size(), "{name} size");
        }
    }

    fn f16_to_f32(bits: u16) -> f32 {
        let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = i32::from((bits >> 10) & 0x1f);
        let frac = f32::from(bits & 0x3ff);
        sign * match exp {
            0 => frac * 2f32.powi(-24),
            31 => f32::INFINITY,
            _ => (1.0 + frac / 1024.0) * 2f32.powi(exp - 15),
        }
    }

    #[test]
    fn zip_state_dict_matches_expected_tensors() {
        assert_matches_expected(&load(fixture!("state_dict_zip.pth")), "state_dict");
    }

    #[test]
    fn legacy_state_dict_matches_expected_tensors() {
        assert_matches_expected(&load(fixture!("state_dict_legacy.pth")), "state_dict");
    }

    #[test]
    fn legacy_pth_loads_same_tensors_as_zip() {
        assert_eq!(
            load(fixture!("state_dict_legacy.pth")),
            load(fixture!("state_dict_zip.pth"))
        );
    }

    #[test]
    fn wrapped_state_dict_is_unwrapped() {
        let wrapped = load(fixture!("wrapped_legacy.pth"));
        assert_matches_expected(&wrapped, "state_dict");
        assert_eq!(wrapped, load(fixture!("wrapped_zip.pth")));
    }

    #[test]
    fn zip_with_archive_top_folder_reads() {
        let bytes = fixture_bytes(fixture!("wrapped_zip.pth"));
        assert!(bytes.windows(9).any(|w| w == b"archive/d"));
        assert_matches_expected(&read_state_dict_bytes(&bytes).unwrap(), "state_dict");
    }

    #[test]
    fn non_tensor_entries_are_skipped() {
        for tensors in [
            load(fixture!("state_dict_zip.pth")),
            load(fixture!("wrapped_legacy.pth")),
        ] {
            assert!(tensors.iter().all(|(n, _)| n != "note" && n != "epoch"));
        }
    }

    #[test]
    fn non_contiguous_tensor_is_materialized() {
        let tensors = load(fixture!("state_dict_zip.pth"));
        let w = f32s(get(&tensors, "lin.weight"));
        let t = get(&tensors, "lin_t");
        assert_eq!(t.shape, [3, 4]);
        let t = f32s(t);
        for r in 0..4 {
            for c in 0..3 {
                assert_eq!(t[c * 4 + r], w[r * 3 + c]);
            }
        }
    }

    #[test]
    fn views_of_a_shared_storage_use_their_offsets() {
        let tensors = load(fixture!("state_dict_legacy.pth"));
        let w = f32s(get(&tensors, "lin.weight"));
        assert_eq!(f32s(get(&tensors, "rows")), w[3..9]);
        assert_eq!(f32s(get(&tensors, "col")), [w[1], w[4], w[7], w[10]]);
    }

    #[test]
    fn expanded_zero_stride_tensor_is_materialized() {
        let tensors = load(fixture!("state_dict_zip.pth"));
        let e = get(&tensors, "expanded");
        assert_eq!(e.shape, [2, 3]);
        assert_eq!(f32s(e), [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
    }

    #[test]
    fn bf16_and_f16_storages_read() {
        let tensors = load(fixture!("state_dict_zip.pth"));
        let halves = |t: &RawTensor| -> Vec<u16> {
            t.data
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect()
        };
        let f16 = get(&tensors, "f16");
        assert_eq!((f16.dtype, f16.shape.as_slice()), (DType::F16, &[2, 2][..]));
        let values: Vec<f32> = halves(f16).into_iter().map(f16_to_f32).collect();
        assert_eq!(values, [0.5, -1.0, 65504.0, 2f32.powi(-24)]);
        let bf16 = get(&tensors, "bf16");
        assert_eq!(bf16.dtype, DType::BF16);
        let values: Vec<f32> = halves(bf16)
            .into_iter()
            .map(|b| f32::from_bits(u32::from(b) << 16))
            .collect();
        assert_eq!(values[..2], [1.0, -3.5]);
        assert!((values[2] / 1e38 - 1.0).abs() < 0.01);
    }

    #[test]
    fn integer_and_bool_dtypes_read() {
        let tensors = load(fixture!("state_dict_legacy.pth"));
        let i32s: Vec<i32> = get(&tensors, "i32")
            .data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(i32s, [i32::MIN, i32::MAX, 0, -1]);
        assert_eq!(get(&tensors, "i8").data, [0x80, 0x7f, 5]);
        assert_eq!(get(&tensors, "u8").data, [0, 255, 7]);
        let flags = get(&tensors, "flags");
        assert_eq!(
            (flags.dtype, flags.data.as_slice()),
            (DType::Bool, &[1, 0, 1][..])
        );
    }

    #[test]
    fn zero_dim_and_empty_tensors_read() {
        let tensors = load(fixture!("state_dict_zip.pth"));
        let scalar = get(&tensors, "bn.num_batches_tracked");
        assert_eq!(scalar.dtype, DType::I64);
        assert!(scalar.shape.is_empty());
        assert_eq!(scalar.data, 42i64.to_le_bytes());
        let empty = get(&tensors, "empty");
        assert_eq!((empty.shape.as_slice(), empty.data.len()), (&[0, 3][..], 0));
    }

    #[test]
    fn parameter_is_unwrapped() {
        let tensors = load(fixture!("state_dict_zip.pth"));
        assert_eq!(f32s(get(&tensors, "param")), [1.0, 2.0]);
    }

    #[test]
    fn legacy_storage_view_metadata_is_applied() {
        let tensors = load(fixture!("legacy_storage_view.pth"));
        assert_matches_expected(&tensors, "legacy_storage_view");
        assert_eq!(f32s(&tensors[0].1), [13.0, 14.0]);
    }

    #[test]
    fn deflated_zip_entries_read() {
        assert_eq!(
            load(fixture!("deflated_zip.pth")),
            load(fixture!("state_dict_zip.pth"))
        );
    }

    #[test]
    fn big_endian_byteorder_is_rejected() {
        let err = read_state_dict(Path::new(fixture!("byteorder_big.pth"))).unwrap_err();
        assert!(
            matches!(&err, PthError::UnsupportedByteOrder { found, .. } if found == "big"),
            "{err}"
        );
    }

    #[test]
    fn truncated_zip_reports_truncated_entry() {
        let bytes = fixture_bytes(fixture!("state_dict_zip.pth"));
        // Cut inside the data of storage 0 (64-byte aligned, 48 bytes long).
        let name = b"state_dict_zip/data/0";
        let at = bytes.windows(name.len()).position(|w| w == name).unwrap();
        let cut = &bytes[..at + name.len() + 100];
        let err = read_state_dict_bytes(cut).unwrap_err();
        match &err {
            PthError::Truncated {
                what,
                needed,
                available,
            } => {
                assert!(what.contains("state_dict_zip/data/0"), "{err}");
                assert!(available < needed, "{err}");
            }
            other => panic!("expected Truncated, got {other}"),
        }
    }

    #[test]
    fn zip_cut_in_central_directory_reports_truncated() {
        let bytes = fixture_bytes(fixture!("state_dict_zip.pth"));
        let err = read_state_dict_bytes(&bytes[..bytes.len() - 30]).unwrap_err();
        assert!(
            matches!(&err, PthError::Truncated { what, .. } if what.contains("central directory")),
            "{err}"
        );
    }

    #[test]
    fn truncated_legacy_storage_data_reports_truncated() {
        let bytes = fixture_bytes(fixture!("state_dict_legacy.pth"));
        let err = read_state_dict_bytes(&bytes[..bytes.len() - 5]).unwrap_err();
        assert!(
            matches!(&err, PthError::Truncated { what, needed, available }
                if what.starts_with("legacy storage '") && what.ends_with("' data")
                    && available < needed),
            "{err}"
        );
    }

    #[test]
    fn truncated_legacy_pickle_reports_truncated() {
        let bytes = fixture_bytes(fixture!("state_dict_legacy.pth"));
        let err = read_state_dict_bytes(&bytes[..300]).unwrap_err();
        assert!(
            matches!(&err, PthError::Truncated { what, .. } if what.contains("legacy object pickle")),
            "{err}"
        );
    }

    #[test]
    fn garbage_bytes_are_not_a_torch_file() {
        let err = read_state_dict_bytes(b"this is not a checkpoint at all").unwrap_err();
        assert!(matches!(err, PthError::NotATorchFile { .. }), "{err}");
        // A valid pickle that is not a torch checkpoint.
        let err = read_state_dict_bytes(b"\x80\x02K\x01.").unwrap_err();
        assert!(matches!(err, PthError::NotATorchFile { .. }), "{err}");
    }

    #[test]
    fn empty_file_is_not_a_torch_file() {
        let err = read_state_dict_bytes(b"").unwrap_err();
        assert!(matches!(err, PthError::NotATorchFile { .. }), "{err}");
    }

    #[test]
    fn missing_file_reports_io_error_with_path() {
        let err = read_state_dict(Path::new("/nonexistent/model.pth")).unwrap_err();
        assert!(matches!(err, PthError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/model.pth"), "{err}");
    }

    #[test]
    fn corrupted_zip_storage_fails_crc() {
        let mut bytes = fixture_bytes(fixture!("state_dict_zip.pth"));
        let name = b"state_dict_zip/data/0";
        let at = bytes.windows(name.len()).position(|w| w == name).unwrap();
        // Storage 0's data starts at the next 64-byte boundary after its header.
        let data_start = (at + name.len()).next_multiple_of(64);
        bytes[data_start + 1] ^= 0xff;
        let err = read_state_dict_bytes(&bytes).unwrap_err();
        assert!(
            matches!(&err, PthError::Zip { part, .. } if part == "state_dict_zip/data/0"),
            "{err}"
        );
    }

    #[test]
    fn missing_zip_storage_is_reported_with_key() {
        let mut bytes = fixture_bytes(fixture!("state_dict_zip.pth"));
        let name = b"state_dict_zip/data/0";
        // Rename the entry (local and central headers) so key '0' is absent.
        let mut from = 0;
        while let Some(i) = bytes[from..].windows(name.len()).position(|w| w == name) {
            bytes[from + i + name.len() - 1] = b'Z';
            from += i + name.len();
        }
        let err = read_state_dict_bytes(&bytes).unwrap_err();
        assert!(
            matches!(&err, PthError::MissingStorage { key, .. } if key == "0"),
            "{err}"
        );
    }

    #[test]
    fn top_level_non_dict_is_bad_format() {
        let mut bytes = LEGACY_MAGIC_PICKLE.to_vec();
        bytes.extend_from_slice(b"\x80\x02M\xe9\x03."); // 1001
        bytes.extend_from_slice(b"\x80\x02}."); // sys_info
        bytes.extend_from_slice(b"\x80\x02]."); // object: []
        bytes.extend_from_slice(b"\x80\x02]."); // storage keys
        let err = read_state_dict_bytes(&bytes).unwrap_err();
        assert!(matches!(err, PthError::BadFormat { .. }), "{err}");
    }

    #[test]
    fn legacy_version_other_than_1001_is_rejected() {
        let mut bytes = LEGACY_MAGIC_PICKLE.to_vec();
        bytes.extend_from_slice(b"\x80\x02M\xea\x03.");
        let err = read_state_dict_bytes(&bytes).unwrap_err();
        assert!(matches!(err, PthError::UnsupportedVersion { .. }), "{err}");
    }

    #[test]
    fn every_prefix_of_a_checkpoint_is_an_error_not_a_panic() {
        for path in [
            fixture!("state_dict_legacy.pth"),
            fixture!("state_dict_zip.pth"),
            fixture!("legacy_storage_view.pth"),
        ] {
            let bytes = fixture_bytes(path);
            for cut in 0..bytes.len() {
                assert!(
                    read_state_dict_bytes(&bytes[..cut]).is_err(),
                    "{path} cut at {cut} parsed"
                );
            }
        }
    }

    #[test]
    fn random_byte_flips_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for path in [
            fixture!("state_dict_legacy.pth"),
            fixture!("state_dict_zip.pth"),
        ] {
            let original = fixture_bytes(path);
            for _ in 0..1500 {
                let mut bytes = original.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() % bytes.len() as u64) as usize;
                    bytes[i] = next() as u8;
                }
                let _ = read_state_dict_bytes(&bytes);
            }
        }
    }

    #[test]
    fn strided_view_outside_storage_is_bad_tensor() {
        let storage = [0u8; 24]; // 6 f32
        assert!(materialize(&storage, DType::F32, 0, &[2, 3], &[3, 1]).is_ok());
        let err = materialize(&storage, DType::F32, 1, &[2, 3], &[3, 1]).unwrap_err();
        assert!(err.contains("reach element 6"), "{err}");
        assert!(materialize(&storage, DType::F32, 0, &[3, 3], &[1, 3]).is_err());
        assert!(materialize(&storage, DType::F32, 0, &[2], &[1, 1]).is_err());
        assert!(
            materialize(&storage, DType::F32, 0, &[usize::MAX, 2], &[0, 0]).is_err(),
            "overflowing element count"
        );
        assert!(
            materialize(&storage, DType::F32, usize::MAX, &[2], &[1]).is_err(),
            "overflowing offset"
        );
    }

    #[test]
    fn huge_zero_stride_expansion_is_refused() {
        let storage = [0u8; 4];
        let err = materialize(&storage, DType::F32, 0, &[1 << 40], &[0]).unwrap_err();
        assert!(err.contains("refusing"), "{err}");
    }

    #[test]
    fn materialize_transposes_3d_view() {
        // storage 0..24 as f32 of shape (2,3,4); view permuted to (4,2,3).
        let storage: Vec<u8> = (0..24u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let out = materialize(&storage, DType::F32, 0, &[4, 2, 3], &[1, 12, 4]).unwrap();
        let t = RawTensor {
            dtype: DType::F32,
            shape: vec![4, 2, 3],
            data: out,
        };
        let v = f32s(&t);
        for a in 0..4 {
            for b in 0..2 {
                for c in 0..3 {
                    assert_eq!(v[a * 6 + b * 3 + c], (b * 12 + c * 4 + a) as f32);
                }
            }
        }
    }
}
