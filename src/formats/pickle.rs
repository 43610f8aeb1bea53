//! A small, safe pickle reader: turns a Python pickle stream into an inert
//! [`Value`] tree.
//!
//! PyTorch checkpoints (`torch.save`) and numpy object arrays (`.npy`/`.npz`
//! with `allow_pickle`) are pickles. We need their *data*, not Python's
//! ability to run arbitrary code, so this is a pickle virtual machine that
//! never calls anything:
//!
//! * `GLOBAL`/`STACK_GLOBAL` produce [`Value::Global`] (just the name).
//! * `REDUCE`, `NEWOBJ`, `NEWOBJ_EX`, `INST` and `OBJ` produce a
//!   [`Value::Object`] record: "call this callable with these args".
//!   Later `BUILD` (`__setstate__`), `SETITEM(S)` and `APPEND(S)`/`ADDITEMS`
//!   aimed at that object are recorded on it, because that is how Python
//!   fills e.g. a `collections.OrderedDict` (`REDUCE` of the class with `()`,
//!   then `SETITEMS`) or a numpy array (`_reconstruct` + `BUILD` with the raw
//!   bytes).
//! * `BUILD` on anything that is not such a record yields [`Value::Build`].
//! * Persistent ids (`PERSID`/`BINPERSID`) yield [`Value::PersistentId`];
//!   torch uses them to point at tensor storages stored outside the pickle.
//!
//! The caller interprets the tree (see `pth.rs`).
//!
//! Supported: protocols 0–5, every opcode except the extension registry
//! (`EXT1/2/4`) and out-of-band buffers (`NEXT_BUFFER`), which neither torch
//! nor numpy write to files.
//!
//! Python 2 byte strings (`STRING`, `BINSTRING`, `SHORT_BINSTRING`) become
//! [`Value::Bytes`]; [`Value::as_text`] accepts them where they are UTF-8,
//! which is what `torch.load(encoding="utf-8")` does. Like Python's
//! `fix_imports`, the Python 2 module names `__builtin__` and `copy_reg`
//! are reported as `builtins` and `copyreg`.
//!
//! # Hostile input
//!
//! Objects live in an arena while the stream is executed, and the stack and
//! memo only hold indices into it, so Python's sharing semantics hold (an
//! object mutated after it was memoized is seen mutated through the memo) and
//! each opcode adds at most three arena entries: memory is linear in the
//! input.
//! Every length field is checked against the remaining input *before* any
//! slicing or allocation, every stack/memo access is checked, and turning the
//! arena into the final tree is limited in depth ([`Limits::max_depth`]) and
//! in total size ([`Limits::max_output_bytes`]), because memo references can
//! make a DAG whose tree expansion is exponential. The conversion uses an
//! explicit work stack, so deep nesting cannot overflow the thread's stack
//! (wherever it runs, e.g. an async worker). Reference cycles
//! (a list containing itself) cannot be a tree and are reported as errors.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// A decoded pickle object. Nothing in it was executed.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    /// Any Python int that fits in an `i64`.
    Int(i64),
    /// A Python int that does not fit in an `i64`: little-endian two's
    /// complement, minimal length (what `LONG1`/`LONG4` store).
    BigInt(Vec<u8>),
    Float(f64),
    String(String),
    /// `bytes`, `bytearray` and Python 2 `str`.
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Key/value pairs in insertion order. Duplicate keys are kept as
    /// written; [`Value::get`] returns the last one, like Python would.
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    FrozenSet(Vec<Value>),
    /// A reference to `module.name` (a class or function), never resolved.
    Global {
        module: String,
        name: String,
    },
    /// A call that Python would have made when unpickling (see [`Object`]).
    Object(Box<Object>),
    /// `BUILD` applied to something that is not an [`Object`].
    Build {
        obj: Box<Value>,
        state: Box<Value>,
    },
    /// A persistent id; the payload is what the pickler's `persistent_id`
    /// returned (torch: a `('storage', ...)` tuple).
    PersistentId(Box<Value>),
}

/// How an [`Object`] would have been created by Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `callable(*args)`: `REDUCE`, `INST`, `OBJ`.
    Reduce,
    /// `cls.__new__(cls, *args, **kwargs)`: `NEWOBJ`, `NEWOBJ_EX`.
    NewObj,
}

/// An inert record of a constructor call plus everything the pickle did to
/// the result afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub kind: ObjectKind,
    /// Usually a [`Value::Global`].
    pub callable: Value,
    /// Usually a [`Value::Tuple`].
    pub args: Value,
    /// Keyword arguments (`NEWOBJ_EX` only).
    pub kwargs: Option<Value>,
    /// Argument of `BUILD` (`__setstate__` or `__dict__` update).
    pub state: Option<Value>,
    /// Items added with `APPEND`, `APPENDS` or `ADDITEMS`.
    pub list_items: Vec<Value>,
    /// Items added with `SETITEM`/`SETITEMS` (how `OrderedDict` and other
    /// dict subclasses carry their contents).
    pub dict_items: Vec<(Value, Value)>,
}

impl Object {
    /// `(module, name)` when the callable is a global.
    pub fn callable_name(&self) -> Option<(&str, &str)> {
        self.callable.global_name()
    }

    /// The positional arguments, when they are a tuple or list.
    pub fn args(&self) -> Option<&[Value]> {
        self.args.as_seq()
    }
}

impl Value {
    /// Short type name for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Global { .. } => "global",
            Value::Object(_) => "object",
            Value::Build { .. } => "built object",
            Value::PersistentId(_) => "persistent id",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A `str`, or `bytes` that are valid UTF-8 (Python 2 strings).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// `bool`, or an int used as one (Python's `bool` is an `int`).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }

    /// A float, or an int (Python allows ints where floats are expected).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Bytes, also in the forms Python 3 uses at protocols < 3:
    /// `_codecs.encode(text, 'latin1')` (each char is one byte),
    /// `builtins.bytes()` for `b''`, and `builtins.bytearray(...)`.
    pub fn bytes_like(&self) -> Option<Cow<'_, [u8]>> {
        let o = match self {
            Value::Bytes(b) => return Some(Cow::Borrowed(b)),
            Value::Object(o) => o,
            _ => return None,
        };
        let args = o.args()?;
        match o.callable_name()? {
            ("_codecs", "encode") => latin1(args),
            ("builtins", "bytes") if args.is_empty() => Some(Cow::Borrowed(&[])),
            ("builtins", "bytearray") => match args {
                [] => Some(Cow::Borrowed(&[])),
                [data] => data.bytes_like(),
                _ => latin1(args),
            },
            _ => None,
        }
    }

    /// Elements of a tuple or list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// `(module, name)` of a [`Value::Global`].
    pub fn global_name(&self) -> Option<(&str, &str)> {
        match self {
            Value::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    pub fn is_global(&self, module: &str, name: &str) -> bool {
        self.global_name() == Some((module, name))
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Key/value pairs of a dict, or of a dict-like object (an [`Object`]
    /// filled with `SETITEMS`, e.g. `collections.OrderedDict`).
    pub fn dict_items(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(items) => Some(items),
            Value::Object(o) if !o.dict_items.is_empty() || is_ordered_dict(o) => {
                Some(&o.dict_items)
            }
            _ => None,
        }
    }

    /// Looks up a text key in a dict or dict-like object (last match wins).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.dict_items()?
            .iter()
            .rev()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v)
    }
}

/// `(text, 'latin1')` arguments to bytes.
fn latin1(args: &[Value]) -> Option<Cow<'static, [u8]>> {
    let [text, encoding] = args else {
        return None;
    };
    if !matches!(
        encoding.as_text(),
        Some("latin1" | "latin-1" | "iso-8859-1" | "iso8859-1")
    ) {
        return None;
    }
    text.as_str()?
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Cow::Owned)
}

fn is_ordered_dict(o: &Object) -> bool {
    o.callable_name() == Some(("collections", "OrderedDict"))
}

/// A pickle opcode byte; displays as its name, e.g. `SETITEMS (0x75)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opcode(pub u8);

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match op::name(self.0) {
            Some(name) => write!(f, "{name} (0x{:02x})", self.0),
            None => write!(f, "opcode 0x{:02x}", self.0),
        }
    }
}

/// Why a pickle could not be read. `offset` is the byte offset of the
/// opcode being executed, relative to the start of the slice given to
/// [`parse`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    #[error("pickle ends early in {opcode} at offset {offset}: needs {needed} more bytes, {available} left")]
    Truncated {
        opcode: Opcode,
        offset: usize,
        needed: u64,
        available: usize,
    },
    #[error("pickle ends at offset {offset} without a STOP opcode")]
    MissingStop { offset: usize },
    #[error("unknown pickle opcode 0x{opcode:02x} at offset {offset}")]
    UnknownOpcode { opcode: u8, offset: usize },
    #[error("unsupported {opcode} at offset {offset}: {reason}")]
    Unsupported {
        opcode: Opcode,
        offset: usize,
        reason: &'static str,
    },
    #[error("unsupported pickle protocol {version} at offset {offset}")]
    UnsupportedProtocol { version: u8, offset: usize },
    #[error("{opcode} at offset {offset}: stack underflow")]
    StackUnderflow { opcode: Opcode, offset: usize },
    #[error("{opcode} at offset {offset}: no MARK to pop")]
    MissingMark { opcode: Opcode, offset: usize },
    #[error("{opcode} at offset {offset}: memo has no entry {key}")]
    MemoMissing {
        opcode: Opcode,
        offset: usize,
        key: u64,
    },
    #[error("{opcode} at offset {offset}: expected {expected}, found {found}")]
    WrongType {
        opcode: Opcode,
        offset: usize,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{opcode} at offset {offset}: invalid {what}: {detail}")]
    Invalid {
        opcode: Opcode,
        offset: usize,
        what: &'static str,
        detail: String,
    },
    #[error("pickle nests deeper than {limit} levels (object created at offset {offset})")]
    TooDeep { limit: usize, offset: usize },
    #[error("pickle expands to more than {limit} bytes of values (shared references?)")]
    TooLarge { limit: usize },
    #[error(
        "pickle contains a reference cycle (object created at offset {offset} contains itself)"
    )]
    Cycle { offset: usize },
    /// A reader invariant did not hold (a bug, reported instead of panicking).
    #[error("internal pickle reader error: {0}")]
    Internal(&'static str),
}

/// Resource limits for [`parse_with_limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest container nesting accepted.
    pub max_depth: usize,
    /// Cap on the (approximate) heap size of the returned tree.
    pub max_output_bytes: usize,
}

impl Limits {
    /// The defaults used by [`parse`]: output may be at most 64 times the
    /// input plus 64 MiB, enough for any honest pickle (sharing in honest
    /// pickles is of small things like strings and globals).
    pub fn for_input_len(len: usize) -> Self {
        Limits {
            max_depth: 512,
            max_output_bytes: len.saturating_mul(64).saturating_add(64 << 20),
        }
    }
}

/// Parses one pickle from the start of `bytes`. Returns the value and the
/// number of bytes consumed (up to and including `STOP`); anything after
/// it is left alone, since torch's legacy format concatenates pickles and
/// raw data.
pub fn parse(bytes: &[u8]) -> Result<(Value, usize), PickleError> {
    parse_with_limits(bytes, &Limits::for_input_len(bytes.len()))
}

/// [`parse`] with explicit resource limits.
pub fn parse_with_limits(bytes: &[u8], limits: &Limits) -> Result<(Value, usize), PickleError> {
    let mut vm = Vm::new(bytes);
    let (root, consumed) = vm.run()?;
    let mut tree = TreeBuilder {
        vm: &vm,
        limits,
        used: 0,
        visiting: vec![false; vm.nodes.len()],
    };
    let value = tree.build(root)?;
    Ok((value, consumed))
}

/// Opcode bytes and names (from CPython's `pickle.py`).
mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const EXT1: u8 = 0x82;
    pub const EXT2: u8 = 0x83;
    pub const EXT4: u8 = 0x84;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const BYTEARRAY8: u8 = 0x96;
    pub const NEXT_BUFFER: u8 = 0x97;
    pub const READONLY_BUFFER: u8 = 0x98;

    pub fn name(op: u8) -> Option<&'static str> {
        Some(match op {
            MARK => "MARK",
            STOP => "STOP",
            POP => "POP",
            POP_MARK => "POP_MARK",
            DUP => "DUP",
            FLOAT => "FLOAT",
            INT => "INT",
            BININT => "BININT",
            BININT1 => "BININT1",
            LONG => "LONG",
            BININT2 => "BININT2",
            NONE => "NONE",
            PERSID => "PERSID",
            BINPERSID => "BINPERSID",
            REDUCE => "REDUCE",
            STRING => "STRING",
            BINSTRING => "BINSTRING",
            SHORT_BINSTRING => "SHORT_BINSTRING",
            UNICODE => "UNICODE",
            BINUNICODE => "BINUNICODE",
            APPEND => "APPEND",
            BUILD => "BUILD",
            GLOBAL => "GLOBAL",
            DICT => "DICT",
            EMPTY_DICT => "EMPTY_DICT",
            APPENDS => "APPENDS",
            GET => "GET",
            BINGET => "BINGET",
            INST => "INST",
            LONG_BINGET => "LONG_BINGET",
            LIST => "LIST",
            EMPTY_LIST => "EMPTY_LIST",
            OBJ => "OBJ",
            PUT => "PUT",
            BINPUT => "BINPUT",
            LONG_BINPUT => "LONG_BINPUT",
            SETITEM => "SETITEM",
            TUPLE => "TUPLE",
            EMPTY_TUPLE => "EMPTY_TUPLE",
            SETITEMS => "SETITEMS",
            BINFLOAT => "BINFLOAT",
            PROTO => "PROTO",
            NEWOBJ => "NEWOBJ",
            EXT1 => "EXT1",
            EXT2 => "EXT2",
            EXT4 => "EXT4",
            TUPLE1 => "TUPLE1",
            TUPLE2 => "TUPLE2",
            TUPLE3 => "TUPLE3",
            NEWTRUE => "NEWTRUE",
            NEWFALSE => "NEWFALSE",
            LONG1 => "LONG1",
            LONG4 => "LONG4",
            BINBYTES => "BINBYTES",
            SHORT_BINBYTES => "SHORT_BINBYTES",
            SHORT_BINUNICODE => "SHORT_BINUNICODE",
            BINUNICODE8 => "BINUNICODE8",
            BINBYTES8 => "BINBYTES8",
            EMPTY_SET => "EMPTY_SET",
            ADDITEMS => "ADDITEMS",
            FROZENSET => "FROZENSET",
            NEWOBJ_EX => "NEWOBJ_EX",
            STACK_GLOBAL => "STACK_GLOBAL",
            MEMOIZE => "MEMOIZE",
            FRAME => "FRAME",
            BYTEARRAY8 => "BYTEARRAY8",
            NEXT_BUFFER => "NEXT_BUFFER",
            READONLY_BUFFER => "READONLY_BUFFER",
            _ => return None,
        })
    }
}

/// Index of a node in the VM's arena.
type Id = usize;

/// Text or bytes payload: either a range of the input (no copy until the
/// final tree is built) or decoded data.
#[derive(Debug)]
enum Payload {
    Input(usize, usize),
    Owned(Vec<u8>),
}

/// Arena form of [`Value`]; containers hold ids so objects can be shared
/// and mutated after being memoized, exactly as in Python.
#[derive(Debug)]
enum Node {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Vec<u8>),
    Float(f64),
    /// Always valid UTF-8 (checked when created).
    Str(Payload),
    Bytes(Payload),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    FrozenSet(Vec<Id>),
    Global {
        module: String,
        name: String,
    },
    Object(ObjectNode),
    Build {
        obj: Id,
        state: Id,
    },
    PersistentId(Id),
}

#[derive(Debug)]
struct ObjectNode {
    kind: ObjectKind,
    callable: Id,
    args: Id,
    kwargs: Option<Id>,
    state: Option<Id>,
    list_items: Vec<Id>,
    dict_items: Vec<(Id, Id)>,
}

impl Node {
    fn type_name(&self) -> &'static str {
        match self {
            Node::None => "None",
            Node::Bool(_) => "bool",
            Node::Int(_) | Node::BigInt(_) => "int",
            Node::Float(_) => "float",
            Node::Str(_) => "str",
            Node::Bytes(_) => "bytes",
            Node::Tuple(_) => "tuple",
            Node::List(_) => "list",
            Node::Dict(_) => "dict",
            Node::Set(_) => "set",
            Node::FrozenSet(_) => "frozenset",
            Node::Global { .. } => "global",
            Node::Object(_) => "object",
            Node::Build { .. } => "built object",
            Node::PersistentId(_) => "persistent id",
        }
    }
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    /// Opcode being executed and its offset, for error context.
    op: u8,
    op_pos: usize,
    nodes: Vec<Node>,
    /// Offset of the opcode that created each node (for error messages).
    origin: Vec<usize>,
    stack: Vec<Id>,
    /// Stack lengths at each MARK (Python's metastack, flattened).
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
}

impl<'a> Vm<'a> {
    fn new(data: &'a [u8]) -> Self {
        Vm {
            data,
            pos: 0,
            op: 0,
            op_pos: 0,
            nodes: Vec::new(),
            origin: Vec::new(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
        }
    }

    // ----- errors -----

    fn opcode(&self) -> Opcode {
        Opcode(self.op)
    }

    fn underflow(&self) -> PickleError {
        PickleError::StackUnderflow {
            opcode: self.opcode(),
            offset: self.op_pos,
        }
    }

    fn invalid(&self, what: &'static str, detail: impl Into<String>) -> PickleError {
        PickleError::Invalid {
            opcode: self.opcode(),
            offset: self.op_pos,
            what,
            detail: detail.into(),
        }
    }

    fn wrong_type(&self, expected: &'static str, found: Id) -> PickleError {
        PickleError::WrongType {
            opcode: self.opcode(),
            offset: self.op_pos,
            expected,
            found: self.nodes.get(found).map_or("?", Node::type_name),
        }
    }

    // ----- input -----

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Takes `n` bytes; the length is checked against the input before
    /// anything is sliced or allocated, so a forged huge length is an error.
    fn take(&mut self, n: u64) -> Result<&'a [u8], PickleError> {
        let available = self.remaining();
        match usize::try_from(n) {
            Ok(n) if n <= available => {
                let data: &'a [u8] = self.data;
                let slice = &data[self.pos..self.pos + n];
                self.pos += n;
                Ok(slice)
            }
            _ => Err(PickleError::Truncated {
                opcode: self.opcode(),
                offset: self.op_pos,
                needed: n,
                available,
            }),
        }
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let slice = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn read_u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take_array::<1>()?[0])
    }

    fn read_u16(&mut self) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(self.take_array()?))
    }

    fn read_u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    fn read_i32(&mut self) -> Result<i32, PickleError> {
        Ok(i32::from_le_bytes(self.take_array()?))
    }

    fn read_u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.take_array()?))
    }

    /// Length prefix that Python stores as a signed 32-bit int.
    fn read_len_i32(&mut self) -> Result<u64, PickleError> {
        let n = self.read_i32()?;
        u64::try_from(n).map_err(|_| self.invalid("length", format!("negative length {n}")))
    }

    /// A `\n`-terminated line (protocol 0 arguments), without the newline.
    fn read_line(&mut self) -> Result<&'a [u8], PickleError> {
        let data: &'a [u8] = self.data;
        let rest = data.get(self.pos..).unwrap_or(&[]);
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                self.pos += n + 1;
                Ok(&rest[..n])
            }
            None => Err(PickleError::Truncated {
                opcode: self.opcode(),
                offset: self.op_pos,
                needed: rest.len() as u64 + 1,
                available: rest.len(),
            }),
        }
    }

    fn read_line_str(&mut self, what: &'static str) -> Result<&'a str, PickleError> {
        let line = self.read_line()?;
        std::str::from_utf8(line).map_err(|e| self.invalid(what, e.to_string()))
    }

    /// A UTF-8 string of `n` bytes, kept as a range of the input.
    fn utf8_payload(&mut self, n: u64) -> Result<Node, PickleError> {
        let start = self.pos;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map_err(|e| self.invalid("UTF-8 string", e.to_string()))?;
        Ok(Node::Str(Payload::Input(start, self.pos)))
    }

    fn bytes_payload(&mut self, n: u64) -> Result<Node, PickleError> {
        let start = self.pos;
        self.take(n)?;
        Ok(Node::Bytes(Payload::Input(start, self.pos)))
    }

    // ----- stack -----

    /// Items below the innermost MARK belong to an outer frame and must not
    /// be popped by ordinary opcodes (Python keeps them on a separate stack).
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, id: Id) {
        self.stack.push(id);
    }

    fn push_node(&mut self, node: Node) {
        let id = self.new_node(node);
        self.push(id);
    }

    fn new_node(&mut self, node: Node) -> Id {
        self.nodes.push(node);
        self.origin.push(self.op_pos);
        self.nodes.len() - 1
    }

    fn pop(&mut self) -> Result<Id, PickleError> {
        if self.stack.len() > self.floor() {
            if let Some(id) = self.stack.pop() {
                return Ok(id);
            }
        }
        Err(self.underflow())
    }

    fn top(&self) -> Result<Id, PickleError> {
        if self.stack.len() > self.floor() {
            if let Some(&id) = self.stack.last() {
                return Ok(id);
            }
        }
        Err(self.underflow())
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, PickleError> {
        let mark = self.marks.pop().ok_or(PickleError::MissingMark {
            opcode: self.opcode(),
            offset: self.op_pos,
        })?;
        if mark > self.stack.len() {
            // Cannot happen (pops never cross a mark), but never panic.
            return Err(self.underflow());
        }
        Ok(self.stack.split_off(mark))
    }

    fn memo_get(&self, key: u64) -> Result<Id, PickleError> {
        self.memo
            .get(&key)
            .copied()
            .ok_or(PickleError::MemoMissing {
                opcode: self.opcode(),
                offset: self.op_pos,
                key,
            })
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn parse_decimal_u64(&self, line: &[u8]) -> Result<u64, PickleError> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| self.invalid("memo key", String::from_utf8_lossy(line).into_owned()))
    }

    fn text_of(&self, id: Id, what: &'static str) -> Result<String, PickleError> {
        match self.nodes.get(id) {
            Some(Node::Str(p)) => Ok(String::from_utf8_lossy(self.payload(p)).into_owned()),
            Some(Node::Bytes(p)) => std::str::from_utf8(self.payload(p))
                .map(str::to_owned)
                .map_err(|e| self.invalid(what, e.to_string())),
            _ => Err(self.wrong_type("str", id)),
        }
    }

    fn payload<'p>(&'p self, p: &'p Payload) -> &'p [u8] {
        match p {
            Payload::Input(start, end) => self.data.get(*start..*end).unwrap_or(&[]),
            Payload::Owned(v) => v,
        }
    }

    fn object_mut(&mut self, id: Id) -> Option<&mut ObjectNode> {
        match self.nodes.get_mut(id) {
            Some(Node::Object(o)) => Some(o),
            _ => None,
        }
    }

    // ----- execution -----

    fn run(&mut self) -> Result<(Id, usize), PickleError> {
        loop {
            self.op_pos = self.pos;
            let Some(&opcode) = self.data.get(self.pos) else {
                return Err(PickleError::MissingStop { offset: self.pos });
            };
            self.pos += 1;
            self.op = opcode;
            if opcode == op::STOP {
                let root = self.pop()?;
                return Ok((root, self.pos));
            }
            self.step(opcode)?;
        }
    }

    fn step(&mut self, opcode: u8) -> Result<(), PickleError> {
        match opcode {
            op::PROTO => {
                let version = self.read_u8()?;
                if version > 5 {
                    return Err(PickleError::UnsupportedProtocol {
                        version,
                        offset: self.op_pos,
                    });
                }
            }
            op::FRAME => {
                // Framing only helps buffered readers; just validate it.
                let len = self.read_u64()?;
                if len > self.remaining() as u64 {
                    return Err(PickleError::Truncated {
                        opcode: self.opcode(),
                        offset: self.op_pos,
                        needed: len,
                        available: self.remaining(),
                    });
                }
            }
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                // Python pops the mark itself when the current frame is empty.
                if self.stack.len() > self.floor() {
                    self.pop()?;
                } else if self.marks.pop().is_none() {
                    return Err(self.underflow());
                }
            }
            op::POP_MARK => {
                self.pop_mark()?;
            }
            op::DUP => {
                let top = self.top()?;
                self.push(top);
            }

            // --- scalars ---
            op::NONE => self.push_node(Node::None),
            op::NEWTRUE => self.push_node(Node::Bool(true)),
            op::NEWFALSE => self.push_node(Node::Bool(false)),
            op::INT => {
                let line = self.read_line_str("INT literal")?;
                let node = match line {
                    "00" => Node::Bool(false),
                    "01" => Node::Bool(true),
                    _ => parse_decimal_int(line.trim())
                        .ok_or_else(|| self.invalid("INT literal", line))?,
                };
                self.push_node(node);
            }
            op::BININT => {
                let v = self.read_i32()?;
                self.push_node(Node::Int(v.into()));
            }
            op::BININT1 => {
                let v = self.read_u8()?;
                self.push_node(Node::Int(v.into()));
            }
            op::BININT2 => {
                let v = self.read_u16()?;
                self.push_node(Node::Int(v.into()));
            }
            op::LONG => {
                let line = self.read_line_str("LONG literal")?;
                // Python 2 wrote a trailing 'L' (and Python 3 keeps doing so).
                let digits = line.trim().trim_end_matches('L');
                let node =
                    parse_decimal_int(digits).ok_or_else(|| self.invalid("LONG literal", line))?;
                self.push_node(node);
            }
            op::LONG1 => {
                let n = self.read_u8()?;
                let bytes = self.take(n.into())?;
                self.push_node(int_from_le(bytes));
            }
            op::LONG4 => {
                let n = self.read_len_i32()?;
                let bytes = self.take(n)?;
                self.push_node(int_from_le(bytes));
            }
            op::BINFLOAT => {
                let v = f64::from_be_bytes(self.take_array()?);
                self.push_node(Node::Float(v));
            }
            op::FLOAT => {
                let line = self.read_line_str("FLOAT literal")?;
                let v: f64 = line
                    .trim()
                    .parse()
                    .map_err(|_| self.invalid("FLOAT literal", line))?;
                self.push_node(Node::Float(v));
            }

            // --- strings and bytes ---
            op::BINUNICODE => {
                let n = self.read_u32()?;
                let node = self.utf8_payload(n.into())?;
                self.push_node(node);
            }
            op::SHORT_BINUNICODE => {
                let n = self.read_u8()?;
                let node = self.utf8_payload(n.into())?;
                self.push_node(node);
            }
            op::BINUNICODE8 => {
                let n = self.read_u64()?;
                let node = self.utf8_payload(n)?;
                self.push_node(node);
            }
            op::UNICODE => {
                let line = self.read_line()?;
                let text = decode_raw_unicode_escape(line)
                    .ok_or_else(|| self.invalid("UNICODE literal", "bad \\u escape"))?;
                self.push_node(Node::Str(Payload::Owned(text.into_bytes())));
            }
            op::BINSTRING => {
                let n = self.read_len_i32()?;
                let node = self.bytes_payload(n)?;
                self.push_node(node);
            }
            op::SHORT_BINSTRING => {
                let n = self.read_u8()?;
                let node = self.bytes_payload(n.into())?;
                self.push_node(node);
            }
            op::STRING => {
                let line = self.read_line()?;
                let bytes = decode_string_literal(line).ok_or_else(|| {
                    self.invalid("STRING literal", String::from_utf8_lossy(line).into_owned())
                })?;
                self.push_node(Node::Bytes(Payload::Owned(bytes)));
            }
            op::BINBYTES => {
                let n = self.read_u32()?;
                let node = self.bytes_payload(n.into())?;
                self.push_node(node);
            }
            op::SHORT_BINBYTES => {
                let n = self.read_u8()?;
                let node = self.bytes_payload(n.into())?;
                self.push_node(node);
            }
            op::BINBYTES8 | op::BYTEARRAY8 => {
                let n = self.read_u64()?;
                let node = self.bytes_payload(n)?;
                self.push_node(node);
            }

            // --- containers ---
            op::EMPTY_TUPLE => self.push_node(Node::Tuple(Vec::new())),
            op::TUPLE => {
                let items = self.pop_mark()?;
                self.push_node(Node::Tuple(items));
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(opcode - op::TUPLE1) + 1;
                let mut items = vec![0; n];
                for slot in items.iter_mut().rev() {
                    *slot = self.pop()?;
                }
                self.push_node(Node::Tuple(items));
            }
            op::EMPTY_LIST => self.push_node(Node::List(Vec::new())),
            op::LIST => {
                let items = self.pop_mark()?;
                self.push_node(Node::List(items));
            }
            op::APPEND => {
                let item = self.pop()?;
                self.extend_list(vec![item])?;
            }
            op::APPENDS => {
                let items = self.pop_mark()?;
                self.extend_list(items)?;
            }
            op::EMPTY_DICT => self.push_node(Node::Dict(Vec::new())),
            op::DICT => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.push_node(Node::Dict(pairs));
            }
            op::SETITEM => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.extend_dict(vec![(key, value)])?;
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.extend_dict(pairs)?;
            }
            op::EMPTY_SET => self.push_node(Node::Set(Vec::new())),
            op::ADDITEMS => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                match self.nodes.get_mut(target) {
                    Some(Node::Set(set)) => set.extend(items),
                    Some(Node::Object(o)) => o.list_items.extend(items),
                    _ => return Err(self.wrong_type("set", target)),
                }
            }
            op::FROZENSET => {
                let items = self.pop_mark()?;
                self.push_node(Node::FrozenSet(items));
            }

            // --- memo ---
            op::PUT => {
                let line = self.read_line()?;
                let key = self.parse_decimal_u64(line)?;
                self.memo_put(key)?;
            }
            op::BINPUT => {
                let key = self.read_u8()?;
                self.memo_put(key.into())?;
            }
            op::LONG_BINPUT => {
                let key = self.read_u32()?;
                self.memo_put(key.into())?;
            }
            op::MEMOIZE => {
                let key = self.memo.len() as u64;
                self.memo_put(key)?;
            }
            op::GET => {
                let line = self.read_line()?;
                let key = self.parse_decimal_u64(line)?;
                let id = self.memo_get(key)?;
                self.push(id);
            }
            op::BINGET => {
                let key = self.read_u8()?;
                let id = self.memo_get(key.into())?;
                self.push(id);
            }
            op::LONG_BINGET => {
                let key = self.read_u32()?;
                let id = self.memo_get(key.into())?;
                self.push(id);
            }

            // --- objects (recorded, never executed) ---
            op::GLOBAL => {
                let module = fix_module(self.read_line_str("GLOBAL module")?);
                let name = self.read_line_str("GLOBAL name")?.to_owned();
                self.push_node(Node::Global { module, name });
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let name = self.text_of(name, "STACK_GLOBAL name")?;
                let module = fix_module(&self.text_of(module, "STACK_GLOBAL module")?);
                self.push_node(Node::Global { module, name });
            }
            op::REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.push_object(ObjectKind::Reduce, callable, args, None);
            }
            op::NEWOBJ => {
                let args = self.pop()?;
                let cls = self.pop()?;
                self.push_object(ObjectKind::NewObj, cls, args, None);
            }
            op::NEWOBJ_EX => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                self.push_object(ObjectKind::NewObj, cls, args, Some(kwargs));
            }
            op::INST => {
                let module = fix_module(self.read_line_str("INST module")?);
                let name = self.read_line_str("INST name")?.to_owned();
                let args = self.pop_mark()?;
                let callable = self.new_node(Node::Global { module, name });
                let args = self.new_node(Node::Tuple(args));
                self.push_object(ObjectKind::Reduce, callable, args, None);
            }
            op::OBJ => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return Err(self.underflow());
                }
                let callable = items.remove(0);
                let args = self.new_node(Node::Tuple(items));
                self.push_object(ObjectKind::Reduce, callable, args, None);
            }
            op::BUILD => {
                let state = self.pop()?;
                let target = self.top()?;
                match self.object_mut(target) {
                    Some(o) if o.state.is_none() => o.state = Some(state),
                    _ => {
                        // Not a recorded call (or built twice): wrap it.
                        let built = self.new_node(Node::Build { obj: target, state });
                        self.pop()?;
                        self.push(built);
                    }
                }
            }
            op::PERSID => {
                let line = self.read_line_str("PERSID id")?;
                let pid = self.new_node(Node::Str(Payload::Owned(line.as_bytes().to_vec())));
                self.push_node(Node::PersistentId(pid));
            }
            op::BINPERSID => {
                let pid = self.pop()?;
                self.push_node(Node::PersistentId(pid));
            }

            op::READONLY_BUFFER => {
                // Only changes mutability of an in-band buffer.
                self.top()?;
            }
            op::NEXT_BUFFER => {
                return Err(PickleError::Unsupported {
                    opcode: self.opcode(),
                    offset: self.op_pos,
                    reason: "out-of-band buffers are not stored in the pickle",
                });
            }
            op::EXT1 | op::EXT2 | op::EXT4 => {
                return Err(PickleError::Unsupported {
                    opcode: self.opcode(),
                    offset: self.op_pos,
                    reason: "the copyreg extension registry is not available",
                });
            }
            _ => {
                return Err(PickleError::UnknownOpcode {
                    opcode,
                    offset: self.op_pos,
                })
            }
        }
        Ok(())
    }

    fn push_object(&mut self, kind: ObjectKind, callable: Id, args: Id, kwargs: Option<Id>) {
        self.push_node(Node::Object(ObjectNode {
            kind,
            callable,
            args,
            kwargs,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        }));
    }

    fn pairs(&self, items: Vec<Id>) -> Result<Vec<(Id, Id)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.invalid(
                "key/value items",
                format!("odd number of items ({})", items.len()),
            ));
        }
        Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
    }

    fn extend_list(&mut self, items: Vec<Id>) -> Result<(), PickleError> {
        let target = self.top()?;
        match self.nodes.get_mut(target) {
            Some(Node::List(list)) => list.extend(items),
            Some(Node::Object(o)) => o.list_items.extend(items),
            _ => return Err(self.wrong_type("list", target)),
        }
        Ok(())
    }

    fn extend_dict(&mut self, pairs: Vec<(Id, Id)>) -> Result<(), PickleError> {
        let target = self.top()?;
        match self.nodes.get_mut(target) {
            Some(Node::Dict(dict)) => dict.extend(pairs),
            Some(Node::Object(o)) => o.dict_items.extend(pairs),
            _ => return Err(self.wrong_type("dict", target)),
        }
        Ok(())
    }
}

/// Converts the arena into a [`Value`] tree, enforcing the limits.
struct TreeBuilder<'v, 'a> {
    vm: &'v Vm<'a>,
    limits: &'v Limits,
    /// Approximate bytes of tree produced so far.
    used: usize,
    /// Nodes on the current path (cycle detection).
    visiting: Vec<bool>,
}

/// Work items of the (iterative, so stack-safe) tree conversion.
enum Task {
    /// Convert this node; its value ends up on the value stack.
    Visit(Id, usize),
    /// All children of this container are on the value stack: assemble it.
    Finish(Id),
}

impl TreeBuilder<'_, '_> {
    fn charge(&mut self, bytes: usize) -> Result<(), PickleError> {
        self.used = self
            .used
            .saturating_add(bytes)
            .saturating_add(std::mem::size_of::<Value>());
        if self.used > self.limits.max_output_bytes {
            return Err(PickleError::TooLarge {
                limit: self.limits.max_output_bytes,
            });
        }
        Ok(())
    }

    /// Depth-first, post-order conversion with explicit stacks, so hostile
    /// nesting cannot overflow the thread's stack.
    fn build(&mut self, root: Id) -> Result<Value, PickleError> {
        let vm = self.vm;
        let mut tasks = vec![Task::Visit(root, 0)];
        let mut values: Vec<Value> = Vec::new();
        while let Some(task) = tasks.pop() {
            match task {
                Task::Visit(id, depth) => {
                    let offset = vm.origin.get(id).copied().unwrap_or(0);
                    if depth > self.limits.max_depth {
                        return Err(PickleError::TooDeep {
                            limit: self.limits.max_depth,
                            offset,
                        });
                    }
                    let Some(node) = vm.nodes.get(id) else {
                        return Err(PickleError::Internal("dangling node id"));
                    };
                    if let Some(v) = self.scalar(node)? {
                        values.push(v);
                        continue;
                    }
                    if self.visiting.get(id).copied().unwrap_or(true) {
                        return Err(PickleError::Cycle { offset });
                    }
                    self.visiting[id] = true;
                    self.charge(0)?;
                    tasks.push(Task::Finish(id));
                    // Reversed, so children are converted (and pushed) in order.
                    let first_child = tasks.len();
                    for_each_child(node, |child| tasks.push(Task::Visit(child, depth + 1)));
                    tasks[first_child..].reverse();
                }
                Task::Finish(id) => {
                    let Some(node) = vm.nodes.get(id) else {
                        continue;
                    };
                    let mut count = 0;
                    for_each_child(node, |_| count += 1);
                    let start = values.len().saturating_sub(count);
                    let children = values.split_off(start);
                    values.push(self.assemble(node, children)?);
                    self.visiting[id] = false;
                }
            }
        }
        values
            .pop()
            .ok_or(PickleError::Internal("tree conversion produced no value"))
    }

    /// Leaf nodes; `None` for containers.
    fn scalar(&mut self, node: &Node) -> Result<Option<Value>, PickleError> {
        let vm = self.vm;
        let value = match node {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::Int(*i),
            Node::Float(f) => Value::Float(*f),
            Node::BigInt(b) => {
                self.charge(b.len())?;
                Value::BigInt(b.clone())
            }
            Node::Str(p) => {
                let bytes = vm.payload(p);
                self.charge(bytes.len())?;
                Value::String(String::from_utf8_lossy(bytes).into_owned())
            }
            Node::Bytes(p) => {
                let bytes = vm.payload(p);
                self.charge(bytes.len())?;
                Value::Bytes(bytes.to_vec())
            }
            Node::Global { module, name } => {
                self.charge(module.len() + name.len())?;
                Value::Global {
                    module: module.clone(),
                    name: name.clone(),
                }
            }
            _ => return Ok(None),
        };
        self.charge(0)?;
        Ok(Some(value))
    }

    /// Builds a container from its converted children (in
    /// [`for_each_child`] order).
    fn assemble(&mut self, node: &Node, children: Vec<Value>) -> Result<Value, PickleError> {
        let mut it = children.into_iter();
        let mut next = || it.next().unwrap_or(Value::None);
        Ok(match node {
            Node::Tuple(items) => Value::Tuple(items.iter().map(|_| next()).collect()),
            Node::List(items) => Value::List(items.iter().map(|_| next()).collect()),
            Node::Set(items) => Value::Set(items.iter().map(|_| next()).collect()),
            Node::FrozenSet(items) => Value::FrozenSet(items.iter().map(|_| next()).collect()),
            Node::Dict(pairs) => Value::Dict(pairs.iter().map(|_| (next(), next())).collect()),
            Node::Object(o) => {
                self.charge(std::mem::size_of::<Object>())?;
                Value::Object(Box::new(Object {
                    kind: o.kind,
                    callable: next(),
                    args: next(),
                    kwargs: o.kwargs.map(|_| next()),
                    state: o.state.map(|_| next()),
                    list_items: o.list_items.iter().map(|_| next()).collect(),
                    dict_items: o.dict_items.iter().map(|_| (next(), next())).collect(),
                }))
            }
            Node::Build { .. } => Value::Build {
                obj: Box::new(next()),
                state: Box::new(next()),
            },
            Node::PersistentId(_) => Value::PersistentId(Box::new(next())),
            // Leaves never get here (see `scalar`).
            _ => Value::None,
        })
    }
}

/// Children of a container node, in the order `assemble` consumes them.
fn for_each_child(node: &Node, mut f: impl FnMut(Id)) {
    match node {
        Node::Tuple(items) | Node::List(items) | Node::Set(items) | Node::FrozenSet(items) => {
            items.iter().for_each(|&id| f(id));
        }
        Node::Dict(pairs) => pairs.iter().for_each(|&(k, v)| {
            f(k);
            f(v);
        }),
        Node::Object(o) => {
            f(o.callable);
            f(o.args);
            o.kwargs.iter().chain(o.state.iter()).for_each(|&id| f(id));
            o.list_items.iter().for_each(|&id| f(id));
            o.dict_items.iter().for_each(|&(k, v)| {
                f(k);
                f(v);
            });
        }
        Node::Build { obj, state } => {
            f(*obj);
            f(*state);
        }
        Node::PersistentId(pid) => f(*pid),
        _ => {}
    }
}

/// Python 2 names of modules that Python 3 renamed, as
/// `pickle.Unpickler(fix_imports=True)` maps them (only the ones that
/// matter for data: builtins and copyreg).
fn fix_module(module: &str) -> String {
    match module {
        "__builtin__" => "builtins",
        "copy_reg" => "copyreg",
        other => other,
    }
    .to_owned()
}

// ----- literal decoding -----

/// Python ints are unbounded; Python itself refuses to parse decimal
/// strings longer than this (`sys.int_info.default_max_str_digits`), and
/// the limit keeps our quadratic conversion cheap.
const MAX_DECIMAL_DIGITS: usize = 4300;

/// Parses a decimal int literal (optional sign) into `Int` or `BigInt`.
fn parse_decimal_int(s: &str) -> Option<Node> {
    if let Ok(v) = s.parse::<i64>() {
        return Some(Node::Int(v));
    }
    let (negative, digits) = match s.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        rest => (false, rest),
    };
    if digits.is_empty()
        || digits.len() > MAX_DECIMAL_DIGITS
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    // Magnitude as little-endian base-256, built by multiply-and-add.
    let mut mag: Vec<u8> = Vec::new();
    for &d in digits {
        let mut carry = u32::from(d - b'0');
        for byte in mag.iter_mut() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    // Room for the sign bit, then two's complement if negative.
    mag.push(0);
    if negative {
        let mut carry = 1u16;
        for byte in mag.iter_mut() {
            let v = u16::from(!*byte) + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
    }
    Some(int_from_le(&mag))
}

/// Little-endian two's complement (LONG1/LONG4 payload) to `Int`/`BigInt`.
fn int_from_le(bytes: &[u8]) -> Node {
    let mut b = bytes.to_vec();
    // Drop redundant sign-extension bytes so equal ints compare equal.
    while b.len() > 1 {
        let last = b[b.len() - 1];
        let sign_of_prev = b[b.len() - 2] & 0x80;
        if (last == 0 && sign_of_prev == 0) || (last == 0xff && sign_of_prev != 0) {
            b.pop();
        } else {
            break;
        }
    }
    if b.is_empty() {
        return Node::Int(0);
    }
    if b.len() <= 8 {
        let fill = if b[b.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
        let mut full = [fill; 8];
        full[..b.len()].copy_from_slice(&b);
        return Node::Int(i64::from_le_bytes(full));
    }
    Node::BigInt(b)
}

/// Python's `raw-unicode-escape` codec: bytes are Latin-1 code points,
/// except `\uXXXX` and `\UXXXXXXXX` escapes.
fn decode_raw_unicode_escape(line: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b == b'\\' && matches!(line.get(i + 1), Some(b'u' | b'U')) {
            // An odd run of backslashes before 'u' is an escape; Python's
            // codec only treats the backslash directly before 'u' this way.
            let width = if line[i + 1] == b'u' { 4 } else { 8 };
            let hex = line.get(i + 2..i + 2 + width)?;
            let code = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(char::from_u32(code)?);
            i += 2 + width;
        } else {
            out.push(char::from(b));
            i += 1;
        }
    }
    Some(out)
}

/// Protocol 0 `STRING` argument: a quoted Python 2 `repr` of a byte
/// string, decoded like `codecs.escape_decode`.
fn decode_string_literal(line: &[u8]) -> Option<Vec<u8>> {
    let inner = match line {
        [q @ (b'\'' | b'"'), inner @ .., end] if end == q => inner,
        _ => return None,
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&e) = inner.get(i) else {
            return None; // trailing backslash
        };
        i += 1;
        match e {
            b'\n' => {}
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match inner.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' => {
                let hex = inner.get(i..i + 2)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            other => {
                // Unknown escapes are kept verbatim, as Python does.
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(bytes: &[u8]) -> Value {
        let (v, used) = parse(bytes).unwrap_or_else(|e| panic!("parse failed: {e}"));
        assert_eq!(used, bytes.len(), "whole pickle consumed");
        v
    }

    fn s(text: &str) -> Value {
        Value::String(text.to_owned())
    }

    #[test]
    fn protocol2_dict_of_lists_parses() {
        // pickle.dumps({'a': [1, 2], 'b': []}, protocol=2)
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02eX\x01\x00\x00\x00bq\x03]q\x04u.";
        let v = parse_ok(bytes);
        assert_eq!(
            v,
            Value::Dict(vec![
                (s("a"), Value::List(vec![Value::Int(1), Value::Int(2)])),
                (s("b"), Value::List(vec![])),
            ])
        );
        assert_eq!(
            v.get("a").and_then(Value::as_seq).map(<[Value]>::len),
            Some(2)
        );
    }

    #[test]
    fn parse_reports_bytes_consumed_and_ignores_trailing_data() {
        let (v, used) = parse(b"\x80\x02K\x07.trailing").unwrap();
        assert_eq!(v, Value::Int(7));
        assert_eq!(used, 5);
    }

    #[test]
    fn huge_length_field_in_truncated_stream_is_an_error() {
        // BINUNICODE8 / BINBYTES8 claiming u64::MAX bytes: must fail fast
        // (an attempt to allocate would abort the test process).
        for opcode in [op::BINUNICODE8, op::BINBYTES8, op::BYTEARRAY8] {
            let mut bytes = vec![0x80, 4, opcode];
            bytes.extend_from_slice(&u64::MAX.to_le_bytes());
            bytes.extend_from_slice(b"abc.");
            match parse(&bytes) {
                Err(PickleError::Truncated {
                    needed, available, ..
                }) => {
                    assert_eq!(needed, u64::MAX);
                    assert_eq!(available, 4);
                }
                other => panic!("expected Truncated, got {other:?}"),
            }
        }
        let bytes = b"\x80\x02X\xff\xff\xff\xffab";
        assert!(matches!(parse(bytes), Err(PickleError::Truncated { .. })));
        let bytes = b"\x80\x02\x8b\xff\xff\xff\x7fab";
        assert!(matches!(parse(bytes), Err(PickleError::Truncated { .. })));
    }

    #[test]
    fn negative_length_is_invalid() {
        let bytes = b"\x80\x02T\xff\xff\xff\xffab.";
        assert!(matches!(parse(bytes), Err(PickleError::Invalid { .. })));
    }

    #[test]
    fn missing_stop_is_an_error() {
        assert_eq!(
            parse(b"\x80\x02K\x01"),
            Err(PickleError::MissingStop { offset: 4 })
        );
        assert_eq!(parse(b""), Err(PickleError::MissingStop { offset: 0 }));
    }

    #[test]
    fn error_messages_name_opcode_and_offset() {
        let err = parse(b"\x80\x02e.").unwrap_err();
        assert_eq!(
            err.to_string(),
            "APPENDS (0x65) at offset 2: no MARK to pop"
        );
        let err = parse(b"\x80\x02h\x05.").unwrap_err();
        assert_eq!(
            err.to_string(),
            "BINGET (0x68) at offset 2: memo has no entry 5"
        );
    }

    #[test]
    fn stack_underflow_is_an_error() {
        assert!(matches!(
            parse(b"."),
            Err(PickleError::StackUnderflow { .. })
        ));
        // APPEND may not reach below the innermost MARK.
        assert!(matches!(
            parse(b"](a."),
            Err(PickleError::StackUnderflow { .. })
        ));
        assert!(matches!(
            parse(b"\x80\x02K\x01\x86."),
            Err(PickleError::StackUnderflow { .. })
        ));
    }

    #[test]
    fn unknown_opcode_is_an_error() {
        assert_eq!(
            parse(b"\x80\x02\xff."),
            Err(PickleError::UnknownOpcode {
                opcode: 0xff,
                offset: 2
            })
        );
    }

    #[test]
    fn protocol_above_5_is_rejected() {
        assert!(matches!(
            parse(b"\x80\x06N."),
            Err(PickleError::UnsupportedProtocol { version: 6, .. })
        ));
    }

    #[test]
    fn appending_to_a_non_list_is_a_type_error() {
        let err = parse(b"\x80\x02K\x01K\x02a.").unwrap_err();
        assert!(matches!(
            err,
            PickleError::WrongType {
                expected: "list",
                found: "int",
                ..
            }
        ));
    }

    #[test]
    fn globals_and_reduce_are_recorded_not_executed() {
        // pickle.dumps(collections.OrderedDict(a=1), protocol=2)
        let bytes =
            b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00aq\x02K\x01s.";
        let v = parse_ok(bytes);
        let obj = v.as_object().expect("object");
        assert_eq!(obj.kind, ObjectKind::Reduce);
        assert_eq!(obj.callable_name(), Some(("collections", "OrderedDict")));
        assert_eq!(obj.args, Value::Tuple(vec![]));
        assert_eq!(v.get("a"), Some(&Value::Int(1)));
    }

    #[test]
    fn build_state_is_attached_to_the_object() {
        // c__main__\nFoo\n ) \x81 (NEWOBJ) } X'x' K1 s b .
        let bytes = b"\x80\x02c__main__\nFoo\n)\x81}X\x01\x00\x00\x00xK\x01sb.";
        let v = parse_ok(bytes);
        let obj = v.as_object().unwrap();
        assert_eq!(obj.kind, ObjectKind::NewObj);
        assert!(obj.callable.is_global("__main__", "Foo"));
        assert_eq!(obj.state, Some(Value::Dict(vec![(s("x"), Value::Int(1))])));
    }

    #[test]
    fn build_on_non_object_is_wrapped() {
        let v = parse_ok(b"\x80\x02]K\x01b.");
        assert_eq!(
            v,
            Value::Build {
                obj: Box::new(Value::List(vec![])),
                state: Box::new(Value::Int(1)),
            }
        );
    }

    #[test]
    fn persistent_ids_are_recorded() {
        let v = parse_ok(b"\x80\x02X\x01\x00\x00\x00kQ.");
        assert_eq!(v, Value::PersistentId(Box::new(s("k"))));
        let v = parse_ok(b"Pabc\n.");
        assert_eq!(v, Value::PersistentId(Box::new(s("abc"))));
    }

    #[test]
    fn memo_sees_mutation_after_put() {
        // l = []; [l, l] with the list filled after being memoized:
        // ] q0 h0 K1 a ... must show [1] in both places.
        let bytes = b"\x80\x02(]q\x00h\x00t.";
        let v = parse_ok(bytes);
        assert_eq!(
            v,
            Value::Tuple(vec![Value::List(vec![]), Value::List(vec![])])
        );
        let bytes = b"\x80\x02]q\x00K\x01a(h\x00h\x00t.";
        // stack: [list] then tuple(list, list) built from memo: STOP pops the tuple.
        let v = parse_ok(bytes);
        let one = Value::List(vec![Value::Int(1)]);
        assert_eq!(v, Value::Tuple(vec![one.clone(), one]));
    }

    #[test]
    fn self_referencing_list_is_a_cycle_error() {
        // l = []; l.append(l)
        let bytes = b"\x80\x02]q\x00h\x00a.";
        assert!(matches!(parse(bytes), Err(PickleError::Cycle { .. })));
    }

    #[test]
    fn exponential_sharing_hits_the_output_limit() {
        // x0 = []; x_{n+1} = (x_n, x_n) ... 64 times: 2^64 leaves as a tree.
        let mut bytes = b"\x80\x02]".to_vec();
        for _ in 0..64 {
            bytes.extend_from_slice(b"2\x86"); // DUP, TUPLE2
        }
        bytes.push(b'.');
        assert!(matches!(parse(&bytes), Err(PickleError::TooLarge { .. })));
    }

    #[test]
    fn deep_nesting_hits_the_depth_limit() {
        let mut bytes = b"\x80\x02".to_vec();
        bytes.extend(std::iter::repeat_n(b']', 100_000));
        bytes.extend(std::iter::repeat_n(b'a', 99_999));
        bytes.push(b'.');
        assert!(matches!(parse(&bytes), Err(PickleError::TooDeep { .. })));
    }

    #[test]
    fn nesting_up_to_the_depth_limit_is_accepted() {
        let depth = Limits::for_input_len(0).max_depth;
        let mut bytes = b"\x80\x02".to_vec();
        bytes.extend(std::iter::repeat_n(b']', depth + 1));
        bytes.extend(std::iter::repeat_n(b'a', depth));
        bytes.push(b'.');
        parse_ok(&bytes);
    }

    #[test]
    fn big_ints_are_normalized_and_small_ones_fit_i64() {
        // LONG1 with redundant sign bytes fits in i64.
        assert_eq!(parse_ok(b"\x8a\x03\xff\xff\xff."), Value::Int(-1));
        assert_eq!(parse_ok(b"\x8a\x00."), Value::Int(0));
        // torch's legacy magic number 0x1950a86a20f9469cfc6c.
        let v = parse_ok(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.");
        assert_eq!(
            v,
            Value::BigInt(vec![
                0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19
            ])
        );
        // The same number as a protocol 0 LONG literal.
        assert_eq!(parse_ok(b"L119547037146038801333356L\n."), v);
        assert_eq!(
            parse_ok(b"L-9223372036854775809L\n."),
            Value::BigInt(vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff])
        );
    }

    #[test]
    fn protocol0_text_opcodes_parse() {
        // pickle.dumps({'k': [1, 2.5, True, 'é', None]}, protocol=0)
        let bytes = b"(dp0\nVk\np1\n(lp2\nI1\naF2.5\naI01\naV\xe9\np3\naNas.";
        let v = parse_ok(bytes);
        assert_eq!(
            v,
            Value::Dict(vec![(
                s("k"),
                Value::List(vec![
                    Value::Int(1),
                    Value::Float(2.5),
                    Value::Bool(true),
                    s("é"),
                    Value::None
                ])
            )])
        );
    }

    #[test]
    fn python2_strings_become_bytes_readable_as_text() {
        let v = parse_ok(b"(S'a\\n\\x41\\'b'\nU\x02hiT\x03\x00\x00\x00abct.");
        let items = v.as_seq().unwrap();
        assert_eq!(items[0], Value::Bytes(b"a\nA'b".to_vec()));
        assert_eq!(items[1].as_text(), Some("hi"));
        assert_eq!(items[2].as_text(), Some("abc"));
    }

    #[test]
    fn unicode_escape_in_protocol0_is_decoded() {
        assert_eq!(parse_ok(b"Va\\u00e9\\U0001F600\n."), s("aé😀"));
    }

    #[test]
    fn sets_and_frozensets_parse() {
        // protocol 4: EMPTY_SET MARK K1 K2 ADDITEMS ; MARK K3 FROZENSET ; TUPLE2
        let v = parse_ok(b"\x80\x04\x8f(K\x01K\x02\x90(K\x03\x91\x86.");
        assert_eq!(
            v,
            Value::Tuple(vec![
                Value::Set(vec![Value::Int(1), Value::Int(2)]),
                Value::FrozenSet(vec![Value::Int(3)]),
            ])
        );
    }

    #[test]
    fn protocol4_frames_memoize_and_stack_global_parse() {
        // pickle.dumps(collections.OrderedDict, protocol=4)
        let bytes = b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94.";
        assert_eq!(
            parse_ok(bytes),
            Value::Global {
                module: "collections".into(),
                name: "OrderedDict".into()
            }
        );
    }

    #[test]
    fn frame_longer_than_input_is_truncated() {
        let bytes = b"\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00N.";
        assert!(matches!(parse(bytes), Err(PickleError::Truncated { .. })));
    }

    #[test]
    fn bytes_opcodes_and_bytes_like_codecs_form_parse() {
        let v = parse_ok(b"\x80\x03C\x02\x00\xff.");
        assert_eq!(v, Value::Bytes(vec![0, 255]));
        // Python 3 bytes at protocol 2: _codecs.encode('\x00\xff', 'latin1')
        let v = parse_ok(
            b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00\x00\xc3\xbfq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.",
        );
        assert_eq!(v.bytes_like().as_deref(), Some(&[0u8, 255][..]));
    }

    #[test]
    fn python2_module_names_are_mapped_to_python3() {
        // pickle.dumps({1, 2}, protocol=2): c__builtin__\nset\n ( [K1 K2] ) R
        let v = parse_ok(b"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.");
        let obj = v.as_object().unwrap();
        assert_eq!(obj.callable_name(), Some(("builtins", "set")));
        // pickle.dumps(b'', protocol=2) is builtins.bytes().
        let v = parse_ok(b"\x80\x02c__builtin__\nbytes\nq\x00)Rq\x01.");
        assert_eq!(v.bytes_like().as_deref(), Some(&[][..]));
    }

    #[test]
    fn numpy_array_pickle_records_reconstruct_and_state() {
        // pickle.dumps(np.array([1.5, 2.5], dtype='<f4'), protocol=3), numpy 2.
        let bytes = b"\x80\x03cnumpy._core.multiarray\x0a_reconstruct\x0aq\x00cnumpy\x0andarray\x0aq\x01K\x00\x85q\x02C\x01bq\x03\x87q\x04Rq\x05(K\x01K\x02\x85q\x06cnumpy\x0adtype\x0aq\x07X\x02\x00\x00\x00f4q\x08\x89\x88\x87q\x09Rq\x0a(K\x03X\x01\x00\x00\x00<q\x0bNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x0cb\x89C\x08\x00\x00\xc0?\x00\x00 @q\x0dtq\x0eb.";
        let v = parse_ok(bytes);
        let arr = v.as_object().unwrap();
        assert_eq!(
            arr.callable_name(),
            Some(("numpy._core.multiarray", "_reconstruct"))
        );
        // state = (version, shape, dtype, is_fortran, raw data)
        let state = arr.state.as_ref().and_then(Value::as_seq).unwrap();
        assert_eq!(state[1], Value::Tuple(vec![Value::Int(2)]));
        let dtype = state[2].as_object().unwrap();
        assert_eq!(dtype.callable_name(), Some(("numpy", "dtype")));
        assert_eq!(dtype.args().unwrap()[0].as_str(), Some("f4"));
        let endian = dtype.state.as_ref().and_then(Value::as_seq).unwrap();
        assert_eq!(endian[1].as_str(), Some("<"));
        assert_eq!(state[3], Value::Bool(false));
        let data = state[4].bytes_like().unwrap();
        assert_eq!(&data[..], [1.5f32, 2.5].map(f32::to_le_bytes).concat());
    }

    #[test]
    fn invalid_utf8_in_binunicode_is_an_error() {
        assert!(matches!(
            parse(b"X\x01\x00\x00\x00\xff."),
            Err(PickleError::Invalid { .. })
        ));
    }

    #[test]
    fn pop_on_empty_frame_pops_the_mark() {
        // MARK POP K1 STOP -> 1 (POP removed the mark, like Python).
        assert_eq!(parse_ok(b"(0K\x01."), Value::Int(1));
    }

    #[test]
    fn fuzzed_prefixes_and_flips_never_panic() {
        let bytes: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02eX\x01\x00\x00\x00bq\x03ccollections\nOrderedDict\nq\x04)Rq\x05X\x01\x00\x00\x00ch\x02h\x05\x86q\x06Qu.";
        parse_ok(bytes);
        for cut in 0..bytes.len() {
            assert!(parse(&bytes[..cut]).is_err());
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            let mut copy = bytes.to_vec();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state % copy.len() as u64) as usize;
                copy[i] = (state >> 32) as u8;
            }
            let _ = parse(&copy);
        }
    }
}
