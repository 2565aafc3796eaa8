//! The publisher's end of plain `ssh`: its key (the user's
//! `~/.ssh/id_ed25519` if there is one, else a key of its own in the state
//! directory), a local port per running contract whose every TCP connection
//! becomes a libp2p tunnel stream to the provider's SSH server, and the
//! files OpenSSH reads: an `ssh_config` with `Host zn-1 ... zn-N` and a
//! `known_hosts` holding each container's host key (checked against the
//! fingerprint in the signed contract), so `ssh -F ssh_config zn-3` asks
//! nothing and a changed host key is refused.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zennet_net::Node;
use zennet_protocol::keys::PublicKey;
use zennet_protocol::sshkey;
use zennet_protocol::tx::Hash32;

/// The key the publisher logs in with.
pub struct UserKey {
    /// The private key file (OpenSSH format), for `IdentityFile`.
    pub private: PathBuf,
    /// Its public line, for the contracts.
    pub public: String,
}

/// The user's `~/.ssh/id_ed25519`, or the state dir's own key (made on first use).
pub fn user_key(state_dir: &Path) -> anyhow::Result<UserKey> {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let private = Path::new(&home).join(".ssh/id_ed25519");
        let public = private.with_extension("pub");
        if private.exists() && public.exists() {
            let line = std::fs::read_to_string(&public).with_context(|| format!("read {}", public.display()))?;
            let k = sshkey::parse(line.trim()).with_context(|| format!("{}", public.display()))?;
            return Ok(UserKey { private, public: k.line });
        }
    }
    let dir = state_dir.join("ssh");
    let private = dir.join("id_ed25519");
    let public = dir.join("id_ed25519.pub");
    if !private.exists() {
        use ssh_key::{rand_core::OsRng, Algorithm, LineEnding, PrivateKey};
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let k = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).context("generate an ssh key")?;
        k.write_openssh_file(&private, LineEnding::LF).with_context(|| format!("write {}", private.display()))?;
        let line = k.public_key().to_openssh().context("encode the ssh key")?;
        std::fs::write(&public, format!("{line} zennet\n")).with_context(|| format!("write {}", public.display()))?;
    }
    let line = std::fs::read_to_string(&public).with_context(|| format!("read {}", public.display()))?;
    let k = sshkey::parse(line.trim()).with_context(|| format!("{}", public.display()))?;
    Ok(UserKey { private, public: k.line })
}

/// One container reachable by ssh.
#[derive(Debug, Clone)]
pub struct Host {
    /// `zn-<index+1>`.
    pub name: String,
    pub port: u16,
    /// Stable per contract: the key `known_hosts` files it under.
    pub alias: String,
    /// The container's host key line.
    pub host_key: String,
    /// Whole cpus (at least 1): MPI slots, parallel jobs.
    pub slots: u32,
}

/// Paths of the files written for OpenSSH and the tools that use it.
#[derive(Clone)]
pub struct Files {
    pub config: PathBuf,
    pub known_hosts: PathBuf,
    /// An MPI hostfile (`zn-1 slots=N`; run mpirun with `--mca plm_rsh_agent "ssh -F ssh_config"`).
    pub mpi: PathBuf,
    /// A GNU parallel `--sshloginfile`.
    pub parallel: PathBuf,
    /// An Ansible inventory (INI).
    pub ansible: PathBuf,
}

/// The formats `zennet hosts --format` prints.
pub const FORMATS: &[&str] = &["ssh", "mpi", "parallel", "ansible"];

impl Files {
    pub fn in_dir(state_dir: &Path) -> Files {
        Files {
            config: state_dir.join("ssh_config"),
            known_hosts: state_dir.join("known_hosts"),
            mpi: state_dir.join("hosts.mpi"),
            parallel: state_dir.join("hosts.parallel"),
            ansible: state_dir.join("inventory.ini"),
        }
    }

    /// The file of `format` (one of [`FORMATS`]).
    pub fn of_format(&self, format: &str) -> anyhow::Result<&Path> {
        Ok(match format {
            "ssh" => &self.config,
            "mpi" => &self.mpi,
            "parallel" => &self.parallel,
            "ansible" => &self.ansible,
            other => bail!("unknown format {other:?}: choose one of {}", FORMATS.join(", ")),
        })
    }

    /// Rewrites every file (each atomically) for `hosts`.
    pub fn write(&self, hosts: &[Host], identity: &Path) -> anyhow::Result<()> {
        let mut mpi = String::new();
        let mut par = String::new();
        let mut ans = String::from("[zennet]\n");
        for h in hosts {
            mpi.push_str(&format!("{} slots={}\n", h.name, h.slots));
            par.push_str(&format!("{}/ssh -F {} {}\n", h.slots, self.config.display(), h.name));
            ans.push_str(&format!("{} ansible_ssh_common_args='-F {}'\n", h.name, self.config.display()));
        }
        write_atomic(&self.mpi, &mpi)?;
        write_atomic(&self.parallel, &par)?;
        write_atomic(&self.ansible, &ans)?;
        let mut cfg = String::from("# Written by zennet for the running fleet; rewritten when it changes.\n");
        let mut kh = String::new();
        for h in hosts {
            cfg.push_str(&format!(
                "\nHost {}\n  HostName 127.0.0.1\n  Port {}\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  HostKeyAlias {}\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  PasswordAuthentication no\n  KbdInteractiveAuthentication no\n  LogLevel ERROR\n",
                h.name,
                h.port,
                identity.display(),
                h.alias,
                self.known_hosts.display()
            ));
            kh.push_str(&format!("{} {}\n[127.0.0.1]:{} {}\n", h.alias, h.host_key, h.port, h.host_key));
        }
        write_atomic(&self.config, &cfg)?;
        write_atomic(&self.known_hosts, &kh)
    }
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename {} to {}", tmp.display(), path.display()))
}

/// Checks that `host_key` is the key whose fingerprint the contract carries.
pub fn check_host_key(host_key: &str, fingerprint: &str) -> anyhow::Result<()> {
    let k = sshkey::parse(host_key).context("the provider's host key")?;
    if k.fingerprint != fingerprint {
        bail!("the provider's host key has fingerprint {}, the contract says {fingerprint}", k.fingerprint);
    }
    Ok(())
}

/// Listens on 127.0.0.1:`port` (0: any free port) and carries each accepted
/// connection to `contract`'s container over a tunnel stream. Returns the
/// port and the task (abort it to close the port).
pub async fn listen(node: Arc<Node>, provider: PublicKey, contract: Hash32, port: u16) -> anyhow::Result<(u16, tokio::task::JoinHandle<()>)> {
    let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.with_context(|| format!("listen on 127.0.0.1:{port} (is the port in use?)"))?;
    let port = l.local_addr()?.port();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                a = l.accept() => {
                    let Ok((mut tcp, _)) = a else { continue };
                    let _ = tcp.set_nodelay(true);
                    let node = node.clone();
                    conns.spawn(async move {
                        match zennet_net::tunnel::open(&node, &provider, &contract).await {
                            Ok(mut s) => {
                                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut s).await;
                            }
                            Err(e) => eprintln!("zennet: ssh tunnel for contract {contract}: {e}"),
                        }
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    Ok((port, task))
}
