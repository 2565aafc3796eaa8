//! Loop devices, attached in one `LOOP_CONFIGURE` ioctl with auto-clear set,
//! so the device is released by the kernel when the filesystem on it is
//! unmounted: nothing to detach, nothing to leak after a crash.

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use thiserror::Error;

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LOOP_MAJOR: u64 = 7;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Loop device errors; each names the device or file.
#[derive(Debug, Error)]
pub enum LoopError {
    /// A call on a loop device or its backing file failed.
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    /// No free loop device could be configured.
    #[error("no free loop device for {0} after retries")]
    Exhausted(PathBuf),
}

/// An attached loop device. Dropping it closes the handle; the device stays
/// bound until its last user goes (auto-clear).
#[derive(Debug)]
pub struct LoopDevice {
    path: PathBuf,
    _file: File,
}

impl LoopDevice {
    /// `/dev/loopN`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Binds `backing` to a free loop device with auto-clear.
pub fn attach(backing: &Path) -> Result<LoopDevice, LoopError> {
    let io_err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| LoopError::Io { what, path, source }
    };
    let ctl_path = Path::new("/dev/loop-control");
    let ctl = OpenOptions::new().read(true).write(true).open(ctl_path).map_err(io_err("open", ctl_path))?;
    let file = OpenOptions::new().read(true).write(true).open(backing).map_err(io_err("open", backing))?;
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(io_err("LOOP_CTL_GET_FREE", ctl_path)(io::Error::last_os_error()));
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        if !path.exists() {
            // Without devtmpfs (some sandboxes) the node must be made by hand.
            let _ = mknod(&path, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), makedev(LOOP_MAJOR, n as u64));
        }
        let dev = OpenOptions::new().read(true).write(true).open(&path).map_err(io_err("open", &path))?;
        // SAFETY: all-zero is a valid LoopConfig; we then set the fields we use.
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = file.as_raw_fd() as u32;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        // SAFETY: LOOP_CONFIGURE reads a `struct loop_config` we own for the call.
        let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
        if rc == 0 {
            return Ok(LoopDevice { path, _file: dev });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(io_err("LOOP_CONFIGURE", &path)(e));
        }
        // Another attach took this device between GET_FREE and CONFIGURE: retry.
    }
    Err(LoopError::Exhausted(backing.to_path_buf()))
}
