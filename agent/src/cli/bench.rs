//! `zennet-agent bench-containers`: the engine against runc and crun on the
//! same busybox bundle in the same run, exec latency, and the cost of
//! reading usage at 100 running containers. Prints one line per figure.

use crate::containers::{oci, rootfs, Engine, EngineConfig};
use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zennet_protocol::spec::Capacity;
use zennet_protocol::ContainerSpec;

/// The cgroup parent of the benchmark's engine and bundles.
const BENCH_PARENT: &str = "zennet-bench";

/// Options of `bench-containers`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Repetitions per latency figure (the median is printed).
    #[arg(long, default_value_t = 50)]
    pub iterations: usize,
    /// Running containers for the usage-read figure.
    #[arg(long, default_value_t = 100)]
    pub containers: usize,
    /// Scratch directory (removed at the end).
    #[arg(long, default_value = "/tmp/zennet-bench")]
    pub dir: PathBuf,
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn time_cmd(n: usize, mut mk: impl FnMut(usize) -> Command) -> Option<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let st = mk(i).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().ok()?;
        if !st.success() {
            return None;
        }
        out.push(t.elapsed());
    }
    Some(out)
}

/// Writes a bundle at `dir` running `args` over the read-only `rootfs`.
fn write_bundle(dir: &Path, rootfs: &Path, args: &[&str], cgroup: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let spec = ContainerSpec::small("bench");
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut v = oci::runtime_spec(&oci::OciInput {
        id: "bench",
        spec: &spec,
        args: &args,
        layers: oci::RootLayers { base: rootfs, upper: rootfs, work: rootfs, mountpoint: rootfs },
        cgroup_path: cgroup,
        cgroup_mode: crate::containers::cgroups::detect_mode(),
    });
    // Same namespaces, user mapping, seccomp and limits; a plain read-only root.
    v["mounts"].as_array_mut().unwrap().remove(0);
    v["root"] = serde_json::json!({ "path": rootfs, "readonly": true });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&v)?)?;
    Ok(())
}

/// Restores the host's /dev/null owner if a runtime under test changed it
/// (seen here: one of the external runtimes chowns the bind-mounted device to
/// the container's root), and says which phase did it.
fn guard_dev_null(phase: &str, owner: (u32, u32)) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(md) = std::fs::metadata("/dev/null") {
        if (md.uid(), md.gid()) != owner {
            let _ = std::os::unix::fs::chown("/dev/null", Some(owner.0), Some(owner.1));
            eprintln!("bench: {phase} changed /dev/null's owner to {}:{}; restored to {}:{}", md.uid(), md.gid(), owner.0, owner.1);
        }
    }
}

/// Runs the benchmark.
pub fn bench_containers(a: BenchArgs) -> Result<()> {
    // A private mount namespace with the (empty) cgroup2 tree hidden: crun
    // needs that on a hybrid host, and every runtime then sees the same view.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("unshare mount namespace")?;
    nix::mount::mount(None::<&str>, "/", None::<&str>, nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE, None::<&str>)?;
    let _ = nix::mount::umount2("/sys/fs/cgroup/unified", nix::mount::MntFlags::MNT_DETACH);

    let _ = std::fs::remove_dir_all(&a.dir);
    // Every runtime's state, the bundles and the base live on a tmpfs, as
    // runc's and crun's state do under /run on a typical host (on this
    // host's ext4, libcontainer's and crun's O_TRUNC state rewrites cost
    // writeback). Private to this mount namespace: gone when the bench exits.
    std::fs::create_dir_all(&a.dir)?;
    nix::mount::mount(Some("tmpfs"), &a.dir, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("mode=0755,size=4g")).context("mount a tmpfs for the bench")?;
    let null_owner = {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata("/dev/null").context("stat /dev/null")?;
        (md.uid(), md.gid())
    };
    let bases = a.dir.join("bases");
    std::fs::create_dir_all(&bases)?;
    rootfs::make_busybox_base(&bases.join("busybox"), Path::new("/bin/busybox")).context("build the busybox base")?;
    let root = bases.join("busybox");
    let once = a.dir.join("bundle-true");
    let idle = a.dir.join("bundle-idle");
    write_bundle(&once, &root, &["/bin/true"], "/zennet-bench/once")?;
    write_bundle(&idle, &root, &["/bin/sleep", "2147483647"], "/zennet-bench/idle")?;

    let cfg = EngineConfig {
        state_dir: a.dir.join("engine"),
        bases_dir: bases.clone(),
        cgroup_parent: BENCH_PARENT.into(),
        capacity: Capacity { memory_bytes: 1 << 30, cpu_millicores: 2000, pids_max: 1024, disk_bytes: 1 << 30 },
        network: None,
        keep_containers_on_exit: false,
    };
    let exe = std::env::current_exe()?;
    let engine = Engine::spawn(&exe, &cfg)?;

    // Lifecycle: create + start + wait for exit + delete.
    let n = a.iterations;
    let mut zen = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let code = engine.run_bundle(&format!("bz-{i}"), &once)?;
        anyhow::ensure!(code == 0, "bundle exited {code}");
        zen.push(t.elapsed());
    }
    let rt_root = |name: &str| a.dir.join(name).to_string_lossy().to_string();
    guard_dev_null("zennet lifecycle", null_owner);
    let runc = time_cmd(n, |i| {
        let mut c = Command::new("runc");
        c.args(["--root", &rt_root("runc"), "run", "--bundle"]).arg(&once).arg(format!("br-{i}"));
        c
    });
    guard_dev_null("runc lifecycle", null_owner);
    let crun = time_cmd(n, |i| {
        let mut c = Command::new("crun");
        c.args(["--root", &rt_root("crun"), "run", "--bundle"]).arg(&once).arg(format!("bc-{i}"));
        c
    });
    guard_dev_null("crun lifecycle", null_owner);
    let z = median_ms(zen);
    let r = runc.map(median_ms);
    let c = crun.map(median_ms);
    let fmt = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into());
    println!(
        "containers lifecycle_p50_ms zennet={z:.2} runc={} crun={} ratio_vs_runc={}",
        fmt(r),
        fmt(c),
        r.map(|r| format!("{:.2}", z / r)).unwrap_or_else(|| "n/a".into())
    );

    // Exec into a running container.
    let spec = ContainerSpec::small("bench");
    engine.run_idle("bench-exec", &spec)?;
    let mut zen = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let out = engine.exec_output("bench-exec", &["/bin/true"], b"", Duration::from_secs(10))?;
        anyhow::ensure!(out.code == 0, "exec exited {}", out.code);
        zen.push(t.elapsed());
    }
    engine.delete("bench-exec")?;
    let runc_root = rt_root("runc");
    let started = Command::new("runc").args(["--root", &runc_root, "run", "-d", "--bundle"]).arg(&idle).arg("br-idle").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    let runc_exec = if started.success() {
        let v = time_cmd(n, |_| {
            let mut c = Command::new("runc");
            c.args(["--root", &runc_root, "exec", "br-idle", "/bin/true"]);
            c
        });
        let _ = Command::new("runc").args(["--root", &runc_root, "delete", "-f", "br-idle"]).status();
        v.map(median_ms)
    } else {
        None
    };
    guard_dev_null("exec", null_owner);
    println!("containers exec_p50_ms zennet={:.2} runc={}", median_ms(zen), fmt(runc_exec));

    // Usage at N running containers, each with its own disk and cgroup.
    let tiny = ContainerSpec { memory_bytes: 16 << 20, disk_bytes: 8 << 20, pids_max: 16, ..ContainerSpec::small("bench") };
    let t = Instant::now();
    for i in 0..a.containers {
        engine.run_idle(&format!("bu-{i}"), &tiny)?;
    }
    let started_s = t.elapsed().as_secs_f64();
    let mut reads = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let u = engine.usage(&[])?;
        anyhow::ensure!(u.len() == a.containers, "usage covered {} of {} containers", u.len(), a.containers);
        reads.push(t.elapsed());
    }
    let total_ms = median_ms(reads);
    println!("containers usage_read_us_per_container={:.1} total_ms={:.2} n={}", total_ms * 1000.0 / a.containers as f64, total_ms, a.containers);
    println!("containers full_create_start_ms_avg={:.1} n={}", started_s * 1000.0 / a.containers as f64, a.containers);
    for i in 0..a.containers {
        engine.delete(&format!("bu-{i}"))?;
    }
    drop(engine);
    guard_dev_null("usage", null_owner);
    // The (now empty) groups this run made: the engine's parent and zygote
    // group, which the bundles' groups (also runc's and crun's) sit under.
    use crate::containers::cgroups;
    for c in cgroups::V1_CONTROLLERS {
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(c).join(BENCH_PARENT));
    }
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(BENCH_PARENT));
    let _ = std::fs::remove_dir(cgroups::zygote_group(cgroups::detect_mode(), BENCH_PARENT));
    let _ = nix::mount::umount2(&a.dir, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(&a.dir);
    Ok(())
}
