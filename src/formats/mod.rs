//! File formats read and written by more than one room, with no meaning attached: the
//! inert [`pickle`] VM, PyTorch checkpoints ([`pth`]), numpy arrays ([`npy`]) and data
//! URLs ([`data_url`]).

pub mod data_url;
pub mod npy;
pub mod pickle;
pub mod pth;
