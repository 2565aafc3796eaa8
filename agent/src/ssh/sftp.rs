//! The `sftp` subsystem (SFTP version 3, what OpenSSH's `sftp` and `scp`
//! speak), served by a process inside the container: the engine's exec path
//! joins the container's namespaces and cgroup, drops to its capabilities
//! and seccomp filter, and then calls [`serve_stdio`] instead of exec'ing a
//! program, so `sftp` and `scp` work with images that ship no sftp-server.
//!
//! Synchronous and single-threaded (it runs in a child of the zygote).
//! Every packet is bounded by [`MAX_PACKET`] before it is read; a client
//! that sends a malformed packet gets `SSH_FX_BAD_MESSAGE`, one that
//! breaks the framing loses the session.

use std::collections::HashMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Largest packet either side sends (OpenSSH's limit is 256 KiB of data).
pub const MAX_PACKET: usize = 256 * 1024 + 1024;
/// Largest READ answered in one DATA packet.
const MAX_READ: u32 = 256 * 1024;
/// Most handles open at once.
const MAX_HANDLES: usize = 1024;
/// Directory entries per NAME packet.
const DIR_BATCH: usize = 128;

const INIT: u8 = 1;
const VERSION: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const READ: u8 = 5;
const WRITE: u8 = 6;
const LSTAT: u8 = 7;
const FSTAT: u8 = 8;
const SETSTAT: u8 = 9;
const FSETSTAT: u8 = 10;
const OPENDIR: u8 = 11;
const READDIR: u8 = 12;
const REMOVE: u8 = 13;
const MKDIR: u8 = 14;
const RMDIR: u8 = 15;
const REALPATH: u8 = 16;
const STAT: u8 = 17;
const RENAME: u8 = 18;
const READLINK: u8 = 19;
const SYMLINK: u8 = 20;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const DATA: u8 = 103;
const NAME: u8 = 104;
const ATTRS: u8 = 105;

const FX_OK: u32 = 0;
const FX_EOF: u32 = 1;
const FX_NO_SUCH_FILE: u32 = 2;
const FX_PERMISSION_DENIED: u32 = 3;
const FX_FAILURE: u32 = 4;
const FX_BAD_MESSAGE: u32 = 5;
const FX_OP_UNSUPPORTED: u32 = 8;

const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;
const ATTR_EXTENDED: u32 = 0x8000_0000;

const OPEN_READ: u32 = 0x1;
const OPEN_WRITE: u32 = 0x2;
const OPEN_APPEND: u32 = 0x4;
const OPEN_CREAT: u32 = 0x8;
const OPEN_TRUNC: u32 = 0x10;
const OPEN_EXCL: u32 = 0x20;

/// Serves SFTP on stdin/stdout until the client closes; returns the exit code.
pub fn serve_stdio() -> i32 {
    // SAFETY: fds 0 and 1 are this process's stdio (the exec path set them).
    let (r, w) = unsafe { (std::os::fd::FromRawFd::from_raw_fd(0), std::os::fd::FromRawFd::from_raw_fd(1)) };
    let (r, w): (File, File) = (r, w);
    match Server::default().run(io::BufReader::with_capacity(MAX_PACKET, r), io::BufWriter::with_capacity(MAX_PACKET, w)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("zennet sftp: {e}");
            1
        }
    }
}

/// Attributes of a file, as far as a packet carries them.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
struct Attrs {
    size: Option<u64>,
    uid_gid: Option<(u32, u32)>,
    perms: Option<u32>,
    times: Option<(u32, u32)>,
}

impl Attrs {
    fn of(m: &Metadata) -> Attrs {
        Attrs { size: Some(m.size()), uid_gid: Some((m.uid(), m.gid())), perms: Some(m.mode()), times: Some((m.atime() as u32, m.mtime() as u32)) }
    }
}

enum Handle {
    File(File),
    Dir { path: PathBuf, entries: Option<fs::ReadDir>, dots: bool },
}

#[derive(Default)]
struct Server {
    handles: HashMap<u32, Handle>,
    next: u32,
}

/// A malformed packet.
struct Bad;

struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if self.0.len() < n {
            return Err(Bad);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Bad> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, Bad> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn bytes(&mut self) -> Result<&'a [u8], Bad> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn path(&mut self) -> Result<PathBuf, Bad> {
        let b = self.bytes()?;
        if b.contains(&0) {
            return Err(Bad);
        }
        let s = std::ffi::OsStr::from_bytes(b);
        Ok(PathBuf::from(if s.is_empty() { ".".as_ref() } else { s }))
    }
    fn attrs(&mut self) -> Result<Attrs, Bad> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid_gid = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.perms = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.times = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..self.u32()? {
                self.bytes()?;
                self.bytes()?;
            }
        }
        Ok(a)
    }
}

#[derive(Default)]
struct Wr(Vec<u8>);

impl Wr {
    fn new(kind: u8, id: u32) -> Wr {
        let mut w = Wr(Vec::with_capacity(64));
        w.u8(kind).u32(id);
        w
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    fn attrs(&mut self, a: &Attrs) -> &mut Self {
        let flags = a.size.map_or(0, |_| ATTR_SIZE) | a.uid_gid.map_or(0, |_| ATTR_UIDGID) | a.perms.map_or(0, |_| ATTR_PERMISSIONS) | a.times.map_or(0, |_| ATTR_ACMODTIME);
        self.u32(flags);
        if let Some(s) = a.size {
            self.u64(s);
        }
        if let Some((u, g)) = a.uid_gid {
            self.u32(u).u32(g);
        }
        if let Some(p) = a.perms {
            self.u32(p);
        }
        if let Some((at, mt)) = a.times {
            self.u32(at).u32(mt);
        }
        self
    }
}

fn status(id: u32, code: u32, msg: &str) -> Wr {
    let mut w = Wr::new(STATUS, id);
    w.u32(code).bytes(msg.as_bytes()).bytes(b"");
    w
}

fn io_status(id: u32, e: &io::Error) -> Wr {
    let code = match e.kind() {
        io::ErrorKind::NotFound => FX_NO_SUCH_FILE,
        io::ErrorKind::PermissionDenied => FX_PERMISSION_DENIED,
        _ => FX_FAILURE,
    };
    status(id, code, &e.to_string())
}

fn done(id: u32, r: io::Result<()>) -> Wr {
    match r {
        Ok(()) => status(id, FX_OK, "ok"),
        Err(e) => io_status(id, &e),
    }
}

/// `ls -l`-style line for a directory listing.
fn long_name(name: &str, a: &Attrs) -> String {
    let mode = a.perms.unwrap_or(0);
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        _ => '-',
    };
    let bits: String = (0..9).map(|i| if mode & (0o400 >> i) != 0 { b"rwxrwxrwx"[i] as char } else { '-' }).collect();
    let (uid, gid) = a.uid_gid.unwrap_or((0, 0));
    format!("{kind}{bits}    1 {uid:<8} {gid:<8} {:>8} {name}", a.size.unwrap_or(0))
}

/// `path` made absolute against the working directory, `.` and `..` resolved
/// without touching the file system (for paths that do not exist yet).
fn lexical_absolute(path: &Path) -> PathBuf {
    let base = if path.is_absolute() { PathBuf::from("/") } else { std::env::current_dir().unwrap_or_else(|_| "/".into()) };
    let mut out = base;
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(p) => out.push(p),
            _ => {}
        }
    }
    out
}

fn set_attrs(path: Option<&Path>, file: Option<&File>, a: &Attrs) -> io::Result<()> {
    if let Some(size) = a.size {
        match (file, path) {
            (Some(f), _) => f.set_len(size)?,
            (None, Some(p)) => OpenOptions::new().write(true).open(p)?.set_len(size)?,
            _ => {}
        }
    }
    if let Some(perms) = a.perms {
        let p = fs::Permissions::from_mode(perms & 0o7777);
        match (file, path) {
            (Some(f), _) => f.set_permissions(p)?,
            (None, Some(path)) => fs::set_permissions(path, p)?,
            _ => {}
        }
    }
    if let Some((u, g)) = a.uid_gid {
        match (file, path) {
            (Some(f), _) => std::os::unix::fs::fchown(f, Some(u), Some(g))?,
            (None, Some(p)) => std::os::unix::fs::chown(p, Some(u), Some(g))?,
            _ => {}
        }
    }
    if let Some((at, mt)) = a.times {
        let ts = [libc::timespec { tv_sec: at as libc::time_t, tv_nsec: 0 }, libc::timespec { tv_sec: mt as libc::time_t, tv_nsec: 0 }];
        // SAFETY: utimensat/futimens with a valid two-element array and, for
        // a path, a NUL-terminated string that outlives the call.
        let rc = match (file, path) {
            (Some(f), _) => unsafe { libc::futimens(std::os::fd::AsRawFd::as_raw_fd(f), ts.as_ptr()) },
            (None, Some(p)) => {
                let c = std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)?;
                unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) }
            }
            _ => 0,
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Server {
    fn run(&mut self, mut r: impl Read, mut w: impl Write) -> io::Result<()> {
        let mut buf = Vec::new();
        loop {
            let mut len = [0u8; 4];
            match r.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
            let n = u32::from_be_bytes(len) as usize;
            if n == 0 || n > MAX_PACKET {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("packet of {n} bytes (at most {MAX_PACKET})")));
            }
            buf.resize(n, 0);
            r.read_exact(&mut buf)?;
            let reply = self.packet(&buf);
            w.write_all(&(reply.0.len() as u32).to_be_bytes())?;
            w.write_all(&reply.0)?;
            w.flush()?;
        }
    }

    fn packet(&mut self, p: &[u8]) -> Wr {
        let mut rd = Rd(p);
        let Ok(kind) = rd.u8() else { return status(0, FX_BAD_MESSAGE, "empty packet") };
        if kind == INIT {
            let mut w = Wr::default();
            w.u8(VERSION).u32(3);
            return w;
        }
        let Ok(id) = rd.u32() else { return status(0, FX_BAD_MESSAGE, "no request id") };
        match self.request(kind, id, &mut rd) {
            Ok(w) => w,
            Err(Bad) => status(id, FX_BAD_MESSAGE, "malformed request"),
        }
    }

    fn handle_of(&self, rd: &mut Rd) -> Result<Option<u32>, Bad> {
        let h = rd.bytes()?;
        Ok(<[u8; 4]>::try_from(h).ok().map(u32::from_be_bytes).filter(|h| self.handles.contains_key(h)))
    }

    fn new_handle(&mut self, id: u32, h: Handle) -> Wr {
        if self.handles.len() >= MAX_HANDLES {
            return status(id, FX_FAILURE, "too many open handles");
        }
        self.next = self.next.wrapping_add(1);
        self.handles.insert(self.next, h);
        let mut w = Wr::new(HANDLE, id);
        w.bytes(&self.next.to_be_bytes());
        w
    }

    fn name(id: u32, entries: &[(String, Attrs)]) -> Wr {
        let mut w = Wr::new(NAME, id);
        w.u32(entries.len() as u32);
        for (n, a) in entries {
            w.bytes(n.as_bytes()).bytes(long_name(n, a).as_bytes()).attrs(a);
        }
        w
    }

    fn request(&mut self, kind: u8, id: u32, rd: &mut Rd) -> Result<Wr, Bad> {
        let bad_handle = || status(id, FX_FAILURE, "invalid handle");
        Ok(match kind {
            OPEN => {
                let (path, pflags, a) = (rd.path()?, rd.u32()?, rd.attrs()?);
                let mut o = OpenOptions::new();
                o.read(pflags & OPEN_READ != 0).write(pflags & (OPEN_WRITE | OPEN_APPEND) != 0).append(pflags & OPEN_APPEND != 0);
                if pflags & OPEN_CREAT != 0 {
                    if pflags & OPEN_EXCL != 0 {
                        o.create_new(true);
                    } else {
                        o.create(true);
                    }
                    o.mode(a.perms.map_or(0o644, |p| p & 0o7777));
                }
                o.truncate(pflags & OPEN_TRUNC != 0);
                match o.open(&path) {
                    Ok(f) => self.new_handle(id, Handle::File(f)),
                    Err(e) => io_status(id, &e),
                }
            }
            CLOSE => match self.handle_of(rd)? {
                Some(h) => {
                    self.handles.remove(&h);
                    status(id, FX_OK, "ok")
                }
                None => bad_handle(),
            },
            READ => {
                let (h, off, len) = (self.handle_of(rd)?, rd.u64()?, rd.u32()?.min(MAX_READ));
                let Some(Handle::File(f)) = h.and_then(|h| self.handles.get(&h)) else { return Ok(bad_handle()) };
                let mut data = vec![0u8; len as usize];
                match f.read_at(&mut data, off) {
                    Ok(0) if len > 0 => status(id, FX_EOF, "end of file"),
                    Ok(n) => {
                        let mut w = Wr::new(DATA, id);
                        w.bytes(&data[..n]);
                        w
                    }
                    Err(e) => io_status(id, &e),
                }
            }
            WRITE => {
                let (h, off, data) = (self.handle_of(rd)?, rd.u64()?, rd.bytes()?);
                let Some(Handle::File(f)) = h.and_then(|h| self.handles.get(&h)) else { return Ok(bad_handle()) };
                done(id, f.write_all_at(data, off))
            }
            LSTAT | STAT => {
                let path = rd.path()?;
                let m = if kind == STAT { fs::metadata(&path) } else { fs::symlink_metadata(&path) };
                match m {
                    Ok(m) => {
                        let mut w = Wr::new(ATTRS, id);
                        w.attrs(&Attrs::of(&m));
                        w
                    }
                    Err(e) => io_status(id, &e),
                }
            }
            FSTAT => {
                let h = self.handle_of(rd)?;
                let m = match h.and_then(|h| self.handles.get(&h)) {
                    Some(Handle::File(f)) => f.metadata(),
                    Some(Handle::Dir { path, .. }) => fs::metadata(path),
                    None => return Ok(bad_handle()),
                };
                match m {
                    Ok(m) => {
                        let mut w = Wr::new(ATTRS, id);
                        w.attrs(&Attrs::of(&m));
                        w
                    }
                    Err(e) => io_status(id, &e),
                }
            }
            SETSTAT => {
                let (path, a) = (rd.path()?, rd.attrs()?);
                done(id, set_attrs(Some(&path), None, &a))
            }
            FSETSTAT => {
                let (h, a) = (self.handle_of(rd)?, rd.attrs()?);
                match h.and_then(|h| self.handles.get(&h)) {
                    Some(Handle::File(f)) => done(id, set_attrs(None, Some(f), &a)),
                    Some(Handle::Dir { path, .. }) => done(id, set_attrs(Some(&path.clone()), None, &a)),
                    None => bad_handle(),
                }
            }
            OPENDIR => {
                let path = rd.path()?;
                match fs::read_dir(&path) {
                    Ok(rdir) => self.new_handle(id, Handle::Dir { path, entries: Some(rdir), dots: false }),
                    Err(e) => io_status(id, &e),
                }
            }
            READDIR => {
                let h = self.handle_of(rd)?;
                let Some(Handle::Dir { path, entries, dots }) = h.and_then(|h| self.handles.get_mut(&h)) else { return Ok(bad_handle()) };
                let mut out = Vec::new();
                if !*dots {
                    *dots = true;
                    for d in [".", ".."] {
                        if let Ok(m) = fs::symlink_metadata(path.join(d)) {
                            out.push((d.to_string(), Attrs::of(&m)));
                        }
                    }
                }
                while out.len() < DIR_BATCH {
                    let Some(e) = entries.as_mut().and_then(|it| it.next()) else {
                        *entries = None;
                        break;
                    };
                    let Ok(e) = e else { continue };
                    let a = e.metadata().map(|m| Attrs::of(&m)).unwrap_or_default();
                    out.push((e.file_name().to_string_lossy().into_owned(), a));
                }
                if out.is_empty() {
                    status(id, FX_EOF, "end of directory")
                } else {
                    Self::name(id, &out)
                }
            }
            REMOVE => done(id, fs::remove_file(rd.path()?)),
            MKDIR => {
                let (path, a) = (rd.path()?, rd.attrs()?);
                done(id, fs::DirBuilder::new().mode(a.perms.map_or(0o755, |p| p & 0o7777)).create(&path))
            }
            RMDIR => done(id, fs::remove_dir(rd.path()?)),
            REALPATH => {
                let path = rd.path()?;
                let abs = fs::canonicalize(&path).unwrap_or_else(|_| lexical_absolute(&path));
                let a = fs::metadata(&abs).map(|m| Attrs::of(&m)).unwrap_or_default();
                Self::name(id, &[(abs.to_string_lossy().into_owned(), a)])
            }
            RENAME => {
                let (from, to) = (rd.path()?, rd.path()?);
                done(id, fs::rename(from, to))
            }
            READLINK => match fs::read_link(rd.path()?) {
                Ok(t) => Self::name(id, &[(t.to_string_lossy().into_owned(), Attrs::default())]),
                Err(e) => io_status(id, &e),
            },
            // OpenSSH sends (target, link) in this order, against the draft.
            SYMLINK => {
                let (target, link) = (rd.path()?, rd.path()?);
                done(id, std::os::unix::fs::symlink(target, link))
            }
            _ => status(id, FX_OP_UNSUPPORTED, "operation not supported"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a session of `reqs` (each a packet body) and returns the reply bodies.
    fn session(reqs: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut input = Vec::new();
        for r in reqs {
            input.extend_from_slice(&(r.len() as u32).to_be_bytes());
            input.extend_from_slice(r);
        }
        let mut out = Vec::new();
        Server::default().run(&input[..], &mut out).unwrap();
        let mut replies = Vec::new();
        let mut rd = Rd(&out);
        while let Ok(b) = rd.bytes() {
            replies.push(b.to_vec());
        }
        replies
    }

    fn req(kind: u8, id: u32, f: impl FnOnce(&mut Wr)) -> Vec<u8> {
        let mut w = Wr::new(kind, id);
        f(&mut w);
        w.0
    }

    fn status_code(reply: &[u8]) -> u32 {
        assert_eq!(reply[0], STATUS, "{reply:?}");
        u32::from_be_bytes(reply[5..9].try_into().unwrap())
    }

    #[test]
    fn a_file_is_written_read_listed_renamed_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n).to_string_lossy().into_owned();
        let (a, b) = (p("a.bin"), p("b.bin"));
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let h = 1u32.to_be_bytes();
        let mut reqs = vec![
            vec![INIT, 0, 0, 0, 3],
            req(OPEN, 1, |w| {
                w.bytes(a.as_bytes()).u32(OPEN_WRITE | OPEN_CREAT | OPEN_TRUNC).u32(ATTR_PERMISSIONS).u32(0o600);
            }),
        ];
        for (i, chunk) in data.chunks(32 * 1024).enumerate() {
            reqs.push(req(WRITE, 10 + i as u32, |w| {
                w.bytes(&h).u64(i as u64 * 32 * 1024).bytes(chunk);
            }));
        }
        reqs.push(req(CLOSE, 20, |w| {
            w.bytes(&h);
        }));
        reqs.push(req(STAT, 21, |w| {
            w.bytes(a.as_bytes());
        }));
        reqs.push(req(RENAME, 22, |w| {
            w.bytes(a.as_bytes()).bytes(b.as_bytes());
        }));
        reqs.push(req(OPEN, 23, |w| {
            w.bytes(b.as_bytes()).u32(OPEN_READ).u32(0);
        }));
        reqs.push(req(READ, 24, |w| {
            w.bytes(&2u32.to_be_bytes()).u64(0).u32(1 << 20);
        }));
        reqs.push(req(READ, 25, |w| {
            w.bytes(&2u32.to_be_bytes()).u64(data.len() as u64).u32(10);
        }));
        reqs.push(req(OPENDIR, 26, |w| {
            w.bytes(d.path().to_string_lossy().as_bytes());
        }));
        reqs.push(req(READDIR, 27, |w| {
            w.bytes(&3u32.to_be_bytes());
        }));
        reqs.push(req(READDIR, 28, |w| {
            w.bytes(&3u32.to_be_bytes());
        }));
        reqs.push(req(REMOVE, 29, |w| {
            w.bytes(b.as_bytes());
        }));
        reqs.push(req(STAT, 30, |w| {
            w.bytes(b.as_bytes());
        }));
        let r = session(&reqs);
        assert_eq!(r[0], vec![VERSION, 0, 0, 0, 3]);
        assert_eq!(r[1][0], HANDLE);
        let n_writes = data.chunks(32 * 1024).count();
        for w in &r[2..2 + n_writes] {
            assert_eq!(status_code(w), FX_OK);
        }
        let mut i = 2 + n_writes;
        assert_eq!(status_code(&r[i]), FX_OK); // close
        i += 1;
        let mut attrs = Rd(&r[i][5..]); // STAT
        assert_eq!(r[i][0], ATTRS);
        let at = attrs.attrs().ok().unwrap();
        assert_eq!(at.size, Some(data.len() as u64));
        assert_eq!(at.perms.unwrap() & 0o777, 0o600);
        i += 1;
        assert_eq!(status_code(&r[i]), FX_OK); // rename
        i += 2; // open for reading
        assert_eq!(r[i][0], DATA);
        let got = Rd(&r[i][5..]).bytes().ok().unwrap().to_vec();
        assert_eq!(got.len(), MAX_READ.min(data.len() as u32) as usize);
        assert_eq!(&got[..], &data[..got.len()]);
        i += 1;
        assert_eq!(status_code(&r[i]), FX_EOF);
        i += 2; // opendir
        assert_eq!(r[i][0], NAME);
        let listing = String::from_utf8_lossy(&r[i]).into_owned();
        assert!(listing.contains("b.bin") && !listing.contains("a.bin"), "{listing}");
        i += 1;
        assert_eq!(status_code(&r[i]), FX_EOF);
        i += 1;
        assert_eq!(status_code(&r[i]), FX_OK); // remove
        assert_eq!(status_code(&r[i + 1]), FX_NO_SUCH_FILE);
    }

    #[test]
    fn bad_requests_get_a_status_and_a_broken_frame_ends_the_session() {
        let r = session(&[vec![READ, 0, 0, 0, 7, 0xff], req(CLOSE, 8, |w| {
            w.bytes(&99u32.to_be_bytes());
        }), req(77, 9, |_| {})]);
        assert_eq!(status_code(&r[0]), FX_BAD_MESSAGE);
        assert_eq!(status_code(&r[1]), FX_FAILURE);
        assert_eq!(status_code(&r[2]), FX_OP_UNSUPPORTED);
        let mut out = Vec::new();
        let big = ((MAX_PACKET + 1) as u32).to_be_bytes();
        assert!(Server::default().run(&big[..], &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn realpath_resolves_paths_that_do_not_exist_yet() {
        let r = session(&[req(REALPATH, 1, |w| {
            w.bytes(b"/tmp/../var/./nope/x");
        })]);
        assert_eq!(r[0][0], NAME);
        assert!(String::from_utf8_lossy(&r[0]).contains("/var/nope/x"));
    }
}
