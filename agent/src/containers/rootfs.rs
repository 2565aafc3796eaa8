//! Root filesystems: the shared read-only bases (a busybox base built from
//! Debian's busybox-static, a Debian minbase built with debootstrap) and each
//! container's writable layer, which lives on its own ext4 image on a loop
//! device so the kernel enforces the disk quota (ENOSPC at the cap).

use super::loopdev;
use super::oci::{HOST_ID_BASE, ID_RANGE};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::fs;
use std::io;
use std::os::unix::fs::{lchown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

/// Errors of base and disk handling; each names the path or command.
#[derive(Debug, Error)]
pub enum RootfsError {
    /// A filesystem call failed on a path.
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    /// An external command failed.
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    /// The named base does not exist under the bases directory.
    #[error("base rootfs `{name}` not found at {path} (build it with `zennet-agent make-base {name}`)")]
    MissingBase { name: String, path: PathBuf },
    /// A mount or unmount failed.
    #[error("{what} {path}: {source}")]
    Mount { what: &'static str, path: PathBuf, source: nix::Error },
    /// Loop device setup failed.
    #[error(transparent)]
    Loop(#[from] loopdev::LoopError),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RootfsError {
    let path = path.to_path_buf();
    move |source| RootfsError::Io { what, path, source }
}

fn run(cmd: &mut Command) -> Result<(), RootfsError> {
    let out = cmd.output().map_err(|e| RootfsError::Command { cmd: format!("{cmd:?}"), stderr: e.to_string() })?;
    if !out.status.success() {
        return Err(RootfsError::Command { cmd: format!("{cmd:?}"), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(())
}

/// Path of base `name` under `bases_dir`, checked to exist.
pub fn base_path(bases_dir: &Path, name: &str) -> Result<PathBuf, RootfsError> {
    let p = bases_dir.join(name);
    if p.join("bin").exists() || p.join("usr/bin").exists() {
        Ok(p)
    } else {
        Err(RootfsError::MissingBase { name: name.to_string(), path: p })
    }
}

/// Recursively gives `path` to the container's root (host uid [`HOST_ID_BASE`])
/// by shifting every owner into the mapped range.
pub fn shift_ownership(path: &Path) -> Result<(), RootfsError> {
    fn walk(p: &Path) -> Result<(), RootfsError> {
        let md = fs::symlink_metadata(p).map_err(io_err("stat", p))?;
        use std::os::unix::fs::MetadataExt;
        let (uid, gid) = (md.uid(), md.gid());
        let shift = |id: u32| if id >= HOST_ID_BASE && id < HOST_ID_BASE + ID_RANGE { id } else { HOST_ID_BASE + id.min(ID_RANGE - 1) };
        lchown(p, Some(shift(uid)), Some(shift(gid))).map_err(io_err("chown", p))?;
        if md.is_dir() {
            // chown clears setuid bits on files; directories keep their mode.
            for e in fs::read_dir(p).map_err(io_err("read dir", p))? {
                walk(&e.map_err(io_err("read dir", p))?.path())?;
            }
        } else if md.is_file() && md.permissions().mode() & 0o6000 != 0 {
            fs::set_permissions(p, md.permissions()).map_err(io_err("chmod", p))?;
        }
        Ok(())
    }
    walk(path)
}

/// Builds the default base at `dest`: Debian's static busybox with a link per
/// applet, a minimal /etc, owned by the container's root.
pub fn make_busybox_base(dest: &Path, busybox: &Path) -> Result<(), RootfsError> {
    install_base(dest, |tmp| {
        for d in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "sys", "dev", "var/tmp", "home"] {
            fs::create_dir_all(tmp.join(d)).map_err(io_err("mkdir", tmp))?;
        }
        fs::set_permissions(tmp.join("tmp"), fs::Permissions::from_mode(0o1777)).map_err(io_err("chmod", tmp))?;
        fs::copy(busybox, tmp.join("bin/busybox")).map_err(io_err("copy", busybox))?;
        let out = Command::new(busybox).arg("--list-full").output().map_err(io_err("run", busybox))?;
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            let link = tmp.join(applet);
            if applet == "bin/busybox" || link.exists() {
                continue;
            }
            let depth = applet.matches('/').count();
            let target = format!("{}bin/busybox", "../".repeat(depth));
            symlink(&target, &link).map_err(io_err("symlink", &link))?;
        }
        let files: &[(&str, &str)] = &[
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
            ("etc/group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"),
            ("etc/hosts", "127.0.0.1 localhost\n"),
            ("etc/resolv.conf", ""),
            ("etc/os-release", "NAME=\"zennet busybox base\"\nID=zennet-busybox\n"),
            ("etc/shells", "/bin/sh\n/bin/ash\n"),
        ];
        for (f, body) in files {
            fs::write(tmp.join(f), body).map_err(io_err("write", &tmp.join(f)))?;
        }
        Ok(())
    })
}

/// Builds a base into `<dest>.tmp` with `build`, gives it to the container's
/// root, then moves it into place, so a half-built base is never used.
fn install_base(dest: &Path, build: impl FnOnce(&Path) -> Result<(), RootfsError>) -> Result<(), RootfsError> {
    let tmp = dest.with_extension("tmp");
    let _ = fs::remove_dir_all(&tmp);
    build(&tmp)?;
    shift_ownership(&tmp)?;
    let _ = fs::remove_dir_all(dest);
    fs::rename(&tmp, dest).map_err(io_err("rename", dest))
}

/// What the Debian base carries beyond minbase: python3, which Ansible's
/// modules need on every managed host (perl, for GNU parallel's remote side,
/// is already there as the essential perl-base).
pub const DEBIAN_BASE_EXTRA: &str = "python3";

/// Builds a Debian minbase base (plus [`DEBIAN_BASE_EXTRA`]) at `dest` with
/// debootstrap (needs Debian's package archive), owned by the container's root.
pub fn make_debian_base(dest: &Path, suite: &str, mirror: Option<&str>) -> Result<(), RootfsError> {
    install_base(dest, |tmp| {
        let mut cmd = Command::new("debootstrap");
        cmd.args(["--variant=minbase", "--no-check-gpg"])
            .arg(format!("--include={DEBIAN_BASE_EXTRA}"))
            .arg(suite)
            .arg(tmp);
        if let Some(m) = mirror {
            cmd.arg(m);
        }
        run(&mut cmd)
    })
}

/// One container's writable layer: an ext4 image on a loop device, mounted
/// on the host, holding the overlay's `upper` and `work` directories.
#[derive(Debug, Clone)]
pub struct Disk {
    /// The sparse image file.
    pub image: PathBuf,
    /// Where the ext4 filesystem is mounted.
    pub mountpoint: PathBuf,
}

impl Disk {
    /// The disk of the container whose state directory is `dir`.
    pub fn at(dir: &Path) -> Disk {
        Disk { image: dir.join("disk.img"), mountpoint: dir.join("disk") }
    }

    /// Overlay upper directory.
    pub fn upper(&self) -> PathBuf {
        self.mountpoint.join("upper")
    }

    /// Overlay work directory.
    pub fn work(&self) -> PathBuf {
        self.mountpoint.join("work")
    }

    /// Makes an ext4 filesystem of `bytes` and mounts it. The loop device is
    /// set to auto-clear, so unmounting releases it. Returns the loop
    /// device's name (e.g. `loop3`), whose block statistics are the
    /// container's disk io.
    pub fn create(&self, bytes: u64) -> Result<String, RootfsError> {
        let f = fs::File::create(&self.image).map_err(io_err("create", &self.image))?;
        f.set_len(bytes).map_err(io_err("truncate", &self.image))?;
        drop(f);
        run(Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-m", "0", "-O", "^has_journal"])
            .arg("-E")
            .arg(format!("root_owner={HOST_ID_BASE}:{HOST_ID_BASE}"))
            .arg(&self.image))?;
        let name = self.mount()?;
        for d in [self.upper(), self.work()] {
            fs::create_dir(&d).map_err(io_err("mkdir", &d))?;
            lchown(&d, Some(HOST_ID_BASE), Some(HOST_ID_BASE)).map_err(io_err("chown", &d))?;
        }
        fs::set_permissions(self.upper(), fs::Permissions::from_mode(0o755)).map_err(io_err("chmod", &self.upper()))?;
        Ok(name)
    }

    /// Mounts an existing image; returns the loop device's name.
    pub fn mount(&self) -> Result<String, RootfsError> {
        fs::create_dir_all(&self.mountpoint).map_err(io_err("mkdir", &self.mountpoint))?;
        let lo = loopdev::attach(&self.image)?;
        let name = lo.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // The image is fresh and sparse: its inode tables are already zero, and
        // lazy zeroing would be billed to the container as disk writes.
        let res = mount(Some(lo.path()), &self.mountpoint, Some("ext4"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("noinit_itable"));
        // The loop device auto-clears when its last user (the mount) goes.
        drop(lo);
        res.map_err(|source| RootfsError::Mount { what: "mount ext4 on", path: self.mountpoint.clone(), source })?;
        Ok(name)
    }

    /// True when the disk is mounted on the host.
    pub fn is_mounted(&self) -> bool {
        is_mountpoint(&self.mountpoint)
    }

    /// Unmounts (lazily, so a still-running container cannot pin it) and
    /// removes the image. Idempotent.
    pub fn destroy(&self) -> Result<(), RootfsError> {
        while is_mountpoint(&self.mountpoint) {
            umount2(&self.mountpoint, MntFlags::MNT_DETACH)
                .map_err(|source| RootfsError::Mount { what: "unmount", path: self.mountpoint.clone(), source })?;
        }
        match fs::remove_file(&self.image) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RootfsError::Io { what: "remove", path: self.image.clone(), source: e }),
        }
    }
}

/// True when `path` is a mount point in this mount namespace.
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(canon) = fs::canonicalize(path) else { return false };
    mount_points().iter().any(|m| *m == canon)
}

/// Every mount point in this mount namespace, from /proc/self/mountinfo.
pub fn mount_points() -> Vec<PathBuf> {
    let Ok(s) = fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    s.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .collect()
}
