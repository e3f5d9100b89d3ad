//! `outpost install` / `uninstall` staged under a temp root: the systemd
//! unit verifies, the CA lands in the bundle `update-ca-certificates`
//! builds, the manifest lists every change, and uninstall leaves the tree
//! byte-identical.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sha2::Digest;
use support::tunnel::{peer_chain, tls_through_proxy};
use support::*;

/// Every path under `root`: file contents, symlink targets, directories.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let digest: String = sha2::Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("{} bytes, sha256 {digest}", bytes.len())
            };
            out.insert(path.strip_prefix(root).unwrap().to_path_buf(), what);
        }
    }
    out
}

fn update_ca_certificates(root: &Path) {
    let at = |p: &str| root.join(p);
    let program = if Path::new("/usr/sbin/update-ca-certificates").exists() {
        "/usr/sbin/update-ca-certificates"
    } else {
        "update-ca-certificates"
    };
    let status = Command::new(program)
        .arg("--certsconf")
        .arg(at("etc/ca-certificates.conf"))
        .arg("--certsdir")
        .arg(at("usr/share/ca-certificates"))
        .arg("--localcertsdir")
        .arg(at("usr/local/share/ca-certificates"))
        .arg("--etccertsdir")
        .arg(at("etc/ssl/certs"))
        .arg("--hooksdir")
        .arg(at("etc/ca-certificates/update.d"))
        .output()
        .expect("update-ca-certificates (Debian's ca-certificates package)");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

/// A staged Debian-like root with one system root certificate trusted.
fn staged_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for dir in [
        "etc/ssl/certs",
        "usr/share/ca-certificates/test",
        "usr/local/share/ca-certificates",
        "etc/ca-certificates/update.d",
    ] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    let system_root = TestCa::new();
    std::fs::write(
        root.path()
            .join("usr/share/ca-certificates/test/system-root.crt"),
        system_root.cert_pem(),
    )
    .unwrap();
    std::fs::write(
        root.path().join("etc/ca-certificates.conf"),
        "test/system-root.crt\n",
    )
    .unwrap();
    update_ca_certificates(root.path());
    root
}

/// `systemd-analyze verify` passes on `units`.
fn systemd_verify(units: &[PathBuf]) {
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units)
        .output()
        .expect("systemd-analyze");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

fn outpost(args: &[&str]) -> support::process::CmdOutput {
    outpost_cli(args, None, Duration::from_secs(60))
}

#[test]
fn install_stages_a_verified_service_trusts_the_ca_and_uninstall_undoes_it_all() {
    let root = staged_root();
    let r = root.path().to_string_lossy().to_string();
    let before = snapshot(root.path());

    // A dry run says what it would do and changes nothing.
    let dry = outpost(&["install", "--root", &r, "--dry-run"]);
    assert_eq!(dry.code, Some(0), "{}", dry.describe());
    assert!(
        dry.stdout_text()
            .contains("etc/systemd/system/outpost.service"),
        "{}",
        dry.describe()
    );
    assert_eq!(
        snapshot(root.path()),
        before,
        "the dry run changed the tree"
    );

    let out = outpost(&["install", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let manifest_path = root.path().join("etc/outpost/install-manifest.json");
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();

    // The CA is in the bundle update-ca-certificates built, beside the
    // system root; its key stays in the state directory, private.
    let anchors = std::fs::read_dir(root.path().join("usr/local/share/ca-certificates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    assert_eq!(anchors.len(), 1, "{anchors:?}");
    let name = anchors[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("outpost-ca-") && name.ends_with(".crt"),
        "{name}"
    );
    let ca = std::fs::read_to_string(&anchors[0]).unwrap();
    assert!(ca.contains("BEGIN CERTIFICATE"));
    // Clients' files: the CA alone, and system roots plus the CA.
    let ca_only = std::fs::read_to_string(root.path().join("etc/outpost/outpost-ca.pem")).unwrap();
    assert_eq!(ca_only.trim(), ca.trim());
    let combined = std::fs::read_to_string(root.path().join("etc/outpost/ca-bundle.pem")).unwrap();
    assert_eq!(
        combined.matches("BEGIN CERTIFICATE").count(),
        2,
        "{combined}"
    );
    assert!(combined.trim_end().ends_with(ca.trim()));
    let bundle =
        std::fs::read_to_string(root.path().join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(
        bundle.contains(ca.trim()),
        "the Outpost CA is not in the bundle"
    );
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
    let key = root.path().join("var/lib/outpost/ca/ca.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(!bundle.contains("PRIVATE KEY"));

    // The unit verifies (ExecStart pointed at the staged binary) and is
    // hardened.
    let unit =
        std::fs::read_to_string(root.path().join("etc/systemd/system/outpost.service")).unwrap();
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "ReadWritePaths=/var/lib/outpost",
        "Restart=on-failure",
        "User=outpost",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
    }
    let check = root.path().join("check");
    std::fs::create_dir(&check).unwrap();
    let staged_unit = check.join("outpost.service");
    std::fs::write(
        &staged_unit,
        unit.replace(
            "ExecStart=/usr/local/bin/outpost",
            &format!("ExecStart={r}/usr/local/bin/outpost"),
        ),
    )
    .unwrap();
    for unit in ["outpost-ca-prune.service", "outpost-ca-prune.timer"] {
        let text =
            std::fs::read_to_string(root.path().join("etc/systemd/system").join(unit)).unwrap();
        std::fs::write(
            check.join(unit),
            text.replace(
                "ExecStart=/usr/local/bin/outpost",
                &format!("ExecStart={r}/usr/local/bin/outpost"),
            ),
        )
        .unwrap();
    }
    systemd_verify(&[
        staged_unit.clone(),
        check.join("outpost-ca-prune.service"),
        check.join("outpost-ca-prune.timer"),
    ]);
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&staged_unit)
        .output()
        .expect("systemd-analyze");
    let report = String::from_utf8_lossy(&security.stdout).into_owned();
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split("exposure level for outpost.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    assert!(exposure <= 2.0, "exposure {exposure}:\n{report}");
    std::fs::remove_dir_all(&check).unwrap();

    // The proxy environment for logins.
    let profile = std::fs::read_to_string(root.path().join("etc/profile.d/outpost.sh")).unwrap();
    assert!(
        profile.contains("export HTTPS_PROXY=http://127.0.0.1:8877"),
        "{profile}"
    );
    assert!(profile.contains("export NODE_EXTRA_CA_CERTS=/etc/outpost/outpost-ca.pem"));
    assert!(profile.contains("export SSL_CERT_FILE=/etc/outpost/ca-bundle.pem"));
    let environment =
        std::fs::read_to_string(root.path().join("etc/environment.d/90-outpost.conf")).unwrap();
    assert!(environment.contains("HTTPS_PROXY=http://127.0.0.1:8877\n"));
    // The daily timer that retires rotated-out CAs, verified too.
    for unit in ["outpost-ca-prune.service", "outpost-ca-prune.timer"] {
        assert!(
            root.path().join("etc/systemd/system").join(unit).is_file(),
            "{unit}"
        );
    }
    assert_eq!(manifest["trust"][0]["kind"], "debian", "{manifest}");

    // The manifest lists every file install added.
    let listed: Vec<String> = manifest["created_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f[0].as_str().unwrap().to_string())
        .collect();
    let after = snapshot(root.path());
    let commands_made = [
        "etc/ssl/certs/",
        "var/lib/outpost/",
        "etc/outpost/install-manifest.json",
    ];
    for (path, what) in &after {
        if before.contains_key(path) || what == "dir" {
            continue;
        }
        let rel = path.to_string_lossy();
        if commands_made.iter().any(|p| rel.starts_with(p)) {
            continue;
        }
        let full = root.path().join(path).to_string_lossy().to_string();
        assert!(
            listed.contains(&full),
            "{rel} is not in the manifest: {listed:?}"
        );
    }

    // Installing again changes nothing.
    let again = outpost(&["install", "--root", &r]);
    assert_eq!(again.code, Some(0), "{}", again.describe());
    assert_eq!(snapshot(root.path()), after);

    // Uninstall: the tree is as before, byte for byte.
    let out = outpost(&["uninstall", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let end = snapshot(root.path());
    assert_eq!(end, before, "uninstall left a difference");
    let nothing = outpost(&["uninstall", "--root", &r]);
    assert!(
        nothing.stdout_text().contains("nothing to do"),
        "{}",
        nothing.describe()
    );
}

#[test]
fn install_replaces_an_existing_file_and_uninstall_restores_it() {
    let root = staged_root();
    let r = root.path().to_string_lossy().to_string();
    let profile = root.path().join("etc/profile.d/outpost.sh");
    std::fs::create_dir_all(profile.parent().unwrap()).unwrap();
    std::fs::write(&profile, "# an older hand-written file\n").unwrap();
    let before = snapshot(root.path());
    let out = outpost(&["install", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(std::fs::read_to_string(&profile)
        .unwrap()
        .contains("HTTPS_PROXY"));
    let out = outpost(&["uninstall", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert_eq!(snapshot(root.path()), before);
    // Installing on the live system needs root.
    if !rustix_is_root() {
        let live = outpost(&["install"]);
        assert_eq!(live.code, Some(1), "{}", live.describe());
        assert!(
            live.stderr.contains("run it as root"),
            "{}",
            live.describe()
        );
    }
}

fn rustix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The certificates of a PEM bundle file.
fn bundle_certs(path: &Path) -> Vec<Vec<u8>> {
    certs_from_pem_file(path)
        .into_iter()
        .map(|c| c.to_vec())
        .collect()
}

/// The leaf the agent presents for `host`, checked against `trusted` only.
fn presented_leaf(agent: &Agent, host: &str, trusted: &Path) -> Result<Vec<u8>, String> {
    let tls = block_on(tls_through_proxy(
        agent.proxy_addr(),
        host,
        443,
        trusted,
        &["http/1.1"],
    ))
    .map_err(|e| e.to_string())?;
    Ok(peer_chain(&tls)[0].to_vec())
}

fn issued_by(leaf: &[u8], ca: &[u8]) -> bool {
    summarize_cert(leaf).issuer_der == summarize_cert(ca).subject_der
}

#[test]
fn ca_rotation_under_load_keeps_every_call_working_and_retires_the_old_ca_after_its_leaves() {
    let root = staged_root();
    let r = root.path().to_string_lossy().to_string();
    let out = outpost(&["install", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let state = root.path().join("var/lib/outpost");
    let bundle = root.path().join("etc/outpost/ca-bundle.pem");
    let system_bundle = root.path().join("etc/ssl/certs/ca-certificates.crt");
    let old_ca = std::fs::read(state.join("ca/ca.pem")).unwrap();
    let old_der = certs_from_pem_file(&state.join("ca/ca.pem"))[0].to_vec();

    let ca = TestCa::new();
    let fake = FakeProvider::tls(&ca).start();
    let agent = Agent::builder()
        .state_dir(&state)
        .fake_upstream(&fake)
        .start();
    let config = agent.config_path().to_path_buf();
    let old_leaf = presented_leaf(&agent, "api.openai.com", &bundle).unwrap();
    assert!(issued_by(&old_leaf, &old_der));

    // Clients that read the bundle afresh for each call, as curl does,
    // calling all through the rotation.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            let proxy = agent.proxy_url();
            let bundle = bundle.clone();
            std::thread::spawn(move || {
                let mut calls = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let out = Curl::new("https://api.openai.com/v1/chat/completions")
                        .proxy(&proxy)
                        .cacert(&bundle)
                        .post_json(&openai_chat_body(false))
                        .run();
                    calls.push((out.exit_code, out.status, out.stderr));
                }
                calls
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    let rotate = outpost_cli(
        &["ca", "rotate", "--root", &r],
        Some(&config),
        Duration::from_secs(60),
    );
    assert_eq!(rotate.code, Some(0), "{}", rotate.describe());
    let new_der = certs_from_pem_file(&state.join("ca/ca.pem"))[0].to_vec();
    assert_ne!(new_der, old_der);

    // Both CAs are trusted during the overlap: the client bundle, the
    // system store update-ca-certificates rebuilt, and two anchors.
    for file in [&bundle, &system_bundle] {
        let certs = bundle_certs(file);
        assert!(
            certs.contains(&old_der),
            "{}: old CA missing",
            file.display()
        );
        assert!(
            certs.contains(&new_der),
            "{}: new CA missing",
            file.display()
        );
    }
    let anchors = std::fs::read_dir(root.path().join("usr/local/share/ca-certificates"))
        .unwrap()
        .count();
    assert_eq!(anchors, 2);
    let show = outpost_cli(&["ca", "show"], Some(&config), Duration::from_secs(30));
    assert!(
        show.stdout_text().contains("retiring:"),
        "{}",
        show.describe()
    );

    // The running agent signs with the new CA within seconds.
    let new_pem = root.path().join("new-ca.pem");
    std::fs::write(&new_pem, std::fs::read(state.join("ca/ca.pem")).unwrap()).unwrap();
    wait_until(
        "the agent signs with the new CA",
        Duration::from_secs(20),
        || {
            presented_leaf(&agent, "api.openai.com", &new_pem)
                .is_ok_and(|leaf| issued_by(&leaf, &new_der))
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let calls: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(calls.len() >= 4, "only {} calls", calls.len());
    for (code, status, stderr) in &calls {
        assert_eq!((*code, *status), (Some(0), 200), "a call failed: {stderr}");
    }
    // The old leaf still verifies during the overlap.
    let old_pem = root.path().join("old-ca.pem");
    std::fs::write(&old_pem, &old_ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs_from_pem_file(&bundle) {
        roots.add(cert).unwrap();
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        ring(),
    )
    .build()
    .unwrap();
    let verify = |leaf: &[u8]| {
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(
                &rustls_pki_types::CertificateDer::from(leaf.to_vec()),
                &[],
                &rustls_pki_types::ServerName::try_from("api.openai.com").unwrap(),
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .is_ok()
    };
    assert!(
        verify(&old_leaf),
        "the old CA's leaf must verify during the overlap"
    );

    // A week later (the retiring record says so), prune takes the old CA
    // out of every store; the new one stays.
    let retiring = std::fs::read_dir(state.join("ca/retiring"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut record: Value = serde_json::from_slice(&std::fs::read(&retiring).unwrap()).unwrap();
    let due = outpost_cli(
        &["ca", "prune", "--root", &r],
        Some(&config),
        Duration::from_secs(60),
    );
    assert!(
        due.stdout_text().contains("0 retired"),
        "{}",
        due.describe()
    );
    record["retire_after"] = Value::from("2020-01-01T00:00:00Z");
    std::fs::write(&retiring, serde_json::to_vec(&record).unwrap()).unwrap();
    let prune = outpost_cli(
        &["ca", "prune", "--root", &r],
        Some(&config),
        Duration::from_secs(60),
    );
    assert_eq!(prune.code, Some(0), "{}", prune.describe());
    assert!(
        prune.stdout_text().contains("1 retired"),
        "{}",
        prune.describe()
    );
    for file in [&bundle, &system_bundle] {
        let certs = bundle_certs(file);
        assert!(
            !certs.contains(&old_der),
            "{}: old CA still trusted",
            file.display()
        );
        assert!(certs.contains(&new_der), "{}: new CA gone", file.display());
    }
    let anchors = std::fs::read_dir(root.path().join("usr/local/share/ca-certificates"))
        .unwrap()
        .count();
    assert_eq!(anchors, 1);
    let show = outpost_cli(&["ca", "show"], Some(&config), Duration::from_secs(30));
    assert!(
        !show.stdout_text().contains("retiring:"),
        "{}",
        show.describe()
    );
    let new_leaf = presented_leaf(&agent, "api.openai.com", &bundle).unwrap();
    assert!(issued_by(&new_leaf, &new_der));

    // Uninstall still takes everything back out.
    drop(agent);
    let out = outpost(&["uninstall", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(!bundle.exists());
    assert_eq!(bundle_certs(&system_bundle).len(), 1);
}

/// `outpost ARGS` with `HOME` set (user installs read it for their paths).
fn outpost_as(home: &str, args: &[&str]) -> support::process::CmdOutput {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outpost"));
    support::process::scrub_env(&mut cmd);
    cmd.args(args).env("HOME", home).env("NO_COLOR", "1");
    support::process::run_with_timeout(&mut cmd, Duration::from_secs(60))
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `snapshot` without the paths under `skip` (databases a tool rewrites).
fn snapshot_except(root: &Path, skip: &str) -> BTreeMap<PathBuf, String> {
    let mut all = snapshot(root);
    all.retain(|p, _| !p.starts_with(skip));
    all
}

#[test]
fn a_user_install_stays_in_the_home_directory_trusts_its_nss_db_and_uninstall_restores_it() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_string_lossy().to_string();
    let home = root.path().join("home/tester");
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    run_ok("certutil", &["-N", "--empty-password", "-d", &db]);
    // A profile with the user's own lines, no final newline.
    std::fs::write(home.join(".profile"), "export EDITOR=vi").unwrap();
    let before = snapshot_except(root.path(), "home/tester/.pki");

    let out = outpost_as("/home/tester", &["install", "--user", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());

    // Everything is under the home directory, at the XDG places.
    for (path, what) in snapshot(root.path()) {
        if !before.contains_key(&path) && what != "dir" {
            assert!(
                path.starts_with("home/tester"),
                "{} outside home",
                path.display()
            );
        }
    }
    let config = std::fs::read_to_string(home.join(".config/outpost/outpost.toml")).unwrap();
    assert!(
        config.contains("state_dir = \"/home/tester/.local/share/outpost\""),
        "{config}"
    );
    assert!(home.join(".local/bin/outpost").is_file());
    assert!(home.join(".local/share/outpost/ca/ca.pem").is_file());
    let unit = std::fs::read_to_string(home.join(".config/systemd/user/outpost.service")).unwrap();
    assert!(unit.contains(
        "ExecStart=/home/tester/.local/bin/outpost run --config /home/tester/.config/outpost/outpost.toml"
    ));
    assert!(!unit.contains("User="), "{unit}");
    let check = root.path().join("check");
    std::fs::create_dir(&check).unwrap();
    std::fs::write(
        check.join("outpost.service"),
        unit.replace(
            "ExecStart=/home/tester",
            &format!("ExecStart={}", home.display()),
        ),
    )
    .unwrap();
    systemd_verify(&[check.join("outpost.service")]);
    std::fs::remove_dir_all(&check).unwrap();
    let environment =
        std::fs::read_to_string(home.join(".config/environment.d/90-outpost.conf")).unwrap();
    assert!(environment.contains("SSL_CERT_FILE=/home/tester/.config/outpost/ca-bundle.pem"));
    let profile = std::fs::read_to_string(home.join(".profile")).unwrap();
    assert!(profile.starts_with("export EDITOR=vi\n"), "{profile}");
    assert!(
        profile.ends_with(". /home/tester/.config/outpost/env.sh # Outpost proxy environment\n"),
        "{profile}"
    );
    // The shell snippet sets the variables when sourced.
    let env_sh = home.join(".config/outpost/env.sh");
    let set = run_ok(
        "sh",
        &[
            "-c",
            &format!(
                ". {} && echo \"$HTTPS_PROXY $NODE_EXTRA_CA_CERTS\"",
                env_sh.display()
            ),
        ],
    );
    assert_eq!(
        set.trim(),
        "http://127.0.0.1:8877 /home/tester/.config/outpost/outpost-ca.pem"
    );

    // The NSS database lists the CA; a second install changes nothing.
    let listed = run_ok("certutil", &["-L", "-d", &db]);
    assert!(listed.contains("Outpost CA "), "{listed}");
    let after = snapshot_except(root.path(), "home/tester/.pki");
    let again = outpost_as("/home/tester", &["install", "--user", "--root", &r]);
    assert_eq!(again.code, Some(0), "{}", again.describe());
    assert_eq!(snapshot_except(root.path(), "home/tester/.pki"), after);
    assert_eq!(
        std::fs::read_to_string(home.join(".profile")).unwrap(),
        profile,
        "the line was added twice"
    );

    let out = outpost_as("/home/tester", &["uninstall", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert_eq!(snapshot_except(root.path(), "home/tester/.pki"), before);
    let listed = run_ok("certutil", &["-L", "-d", &db]);
    assert!(!listed.contains("Outpost CA"), "{listed}");
}

#[test]
fn a_fedora_root_gets_its_anchor_and_the_bundle_and_leaves_the_live_refresh_out() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_string_lossy().to_string();
    let system_root = TestCa::new();
    for (path, text) in [
        ("etc/os-release", "NAME=\"Fedora Linux\"\nID=fedora\n"),
        ("etc/pki/tls/certs/ca-bundle.crt", system_root.cert_pem()),
    ] {
        let path = root.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    std::fs::create_dir_all(root.path().join("etc/pki/ca-trust/source/anchors")).unwrap();
    let before = snapshot(root.path());

    let out = outpost(&["install", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let anchors: Vec<PathBuf> =
        std::fs::read_dir(root.path().join("etc/pki/ca-trust/source/anchors"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    assert_eq!(anchors.len(), 1);
    assert!(anchors[0].to_string_lossy().ends_with(".pem"));
    assert!(!root.path().join("usr/local/share/ca-certificates").exists());
    assert!(
        out.stdout_text()
            .contains("skip   update-ca-trust extract (staged root)"),
        "{}",
        out.describe()
    );
    let combined = root.path().join("etc/outpost/ca-bundle.pem");
    let certs = bundle_certs(&combined);
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0], system_root.cert_der().to_vec());
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(root.path().join("etc/outpost/install-manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["trust"][0]["kind"], "fedora", "{manifest}");

    let out = outpost(&["uninstall", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert_eq!(snapshot(root.path()), before);
}

#[test]
fn a_java_keystore_gets_the_ca_under_its_own_alias_and_loses_it_on_uninstall() {
    let root = staged_root();
    let r = root.path().to_string_lossy().to_string();
    let security = root.path().join("usr/lib/jvm/test-jdk/lib/security");
    std::fs::create_dir_all(&security).unwrap();
    let keystore = security.join("cacerts");
    let k = keystore.to_string_lossy().to_string();
    let system_root = TestCa::new();
    let pass = ["-storepass", "changeit"];
    let list = |k: &str| run_ok("keytool", &[&["-list", "-keystore", k][..], &pass].concat());
    run_ok(
        "keytool",
        &[
            &[
                "-importcert",
                "-noprompt",
                "-alias",
                "system-root",
                "-file",
                &system_root.pem_path().to_string_lossy(),
                "-keystore",
                &k,
            ][..],
            &pass,
        ]
        .concat(),
    );
    assert!(!list(&k).contains("outpost-ca-"));

    let out = outpost(&["install", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let listed = list(&k);
    assert!(listed.contains("outpost-ca-"), "{listed}");
    assert!(listed.contains("system-root"), "{listed}");

    let out = outpost(&["uninstall", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    let listed = list(&k);
    assert!(!listed.contains("outpost-ca-"), "{listed}");
    assert!(listed.contains("system-root"), "{listed}");
}

/// The exactly named hosts the shipped policy intercepts.
fn default_intercepted_hosts() -> Vec<String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("policy/default.toml"))
            .unwrap();
    let policy: toml::Table = text.parse().unwrap();
    policy["intercept"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h.as_str())
        .filter(|h| !h.starts_with("*."))
        .map(String::from)
        .collect()
}

fn doctor(root: &str, config: &Path, env: &[(&str, String)]) -> support::process::CmdOutput {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outpost"));
    support::process::scrub_env(&mut cmd);
    cmd.args(["doctor", "--root", root, "--config"])
        .arg(config)
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    support::process::run_with_timeout(&mut cmd, Duration::from_secs(60))
}

/// The doctor's line for `check` (its status column and text).
fn doctor_line(out: &support::process::CmdOutput, check: &str) -> String {
    out.stdout_text()
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no {check} line:\n{}", out.describe()))
        .to_string()
}

#[test]
fn doctor_is_all_green_on_a_working_install_and_names_the_fix_when_the_agent_stops() {
    let root = staged_root();
    let r = root.path().to_string_lossy().to_string();
    // A user's browser profile: install puts the CA in it, doctor checks.
    let nssdb = root.path().join("home/tester/.pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    run_ok("certutil", &["-N", "--empty-password", "-d", &db]);
    let out = outpost(&["install", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());

    let ca = TestCa::new();
    let mut fake = FakeProvider::tls(&ca);
    for host in default_intercepted_hosts() {
        if !support::fake::DEFAULT_FAKE_NAMES.contains(&host.as_str()) {
            fake = fake.extra_name(&host);
        }
    }
    let fake = fake.start();
    let mut agent = Agent::builder()
        .state_dir(&root.path().join("var/lib/outpost"))
        .fake_upstream(&fake)
        .start();
    let config = agent.config_path().to_path_buf();
    let env = vec![
        ("HTTPS_PROXY", agent.proxy_url()),
        ("SSL_CERT_FILE", format!("{r}/etc/outpost/ca-bundle.pem")),
        (
            "NODE_EXTRA_CA_CERTS",
            format!("{r}/etc/outpost/outpost-ca.pem"),
        ),
    ];

    let green = doctor(&r, &config, &env);
    assert_eq!(green.code, Some(0), "{}", green.describe());
    let text = green.stdout_text();
    for check in [
        "service", "ca", "trust", "proxy", "policy", "sync", "upstream",
    ] {
        assert!(
            doctor_line(&green, check).trim_start().starts_with("ok"),
            "{check}:\n{text}"
        );
    }
    assert!(!text.contains("FAIL") && !text.contains("WARN"), "{text}");
    assert!(text.contains("verifies against the system store"), "{text}");
    assert!(
        text.contains(&format!("NSS database {} holds the CA", nssdb.display())),
        "{text}"
    );
    assert!(text.contains("all checks passed"), "{text}");

    // Without the proxy environment, that check fails and says how to get it.
    let no_env = doctor(&r, &config, &[]);
    assert_eq!(no_env.code, Some(1), "{}", no_env.describe());
    assert!(doctor_line(&no_env, "proxy").contains("FAIL"));
    assert!(
        no_env.stdout_text().contains("fix: log in again"),
        "{}",
        no_env.describe()
    );

    // The agent stops: the service check fails with its fix, and the
    // checks that need it say so instead of passing.
    agent.kill_hard();
    let stopped = doctor(&r, &config, &env);
    assert_eq!(stopped.code, Some(1), "{}", stopped.describe());
    let service = doctor_line(&stopped, "service");
    assert!(
        service.contains("FAIL") && service.contains("no agent answers"),
        "{service}"
    );
    let text = stopped.stdout_text();
    let after = text.split(&service).nth(1).unwrap_or_default();
    assert!(
        after
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .contains("fix: start the agent"),
        "{text}"
    );
    assert!(doctor_line(&stopped, "trust").contains("FAIL"), "{text}");
    assert!(doctor_line(&stopped, "policy").contains("ok"), "{text}");
}

#[test]
fn an_install_that_fails_half_way_is_undone_by_uninstall() {
    let root = staged_root();
    let r = root.path().to_string_lossy().to_string();
    // A file where install needs a directory: it fails at that step, after
    // the binary, config, CA, unit and trust are in place.
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/environment.d"), "not a directory\n").unwrap();
    let before = snapshot(root.path());
    let out = outpost(&["install", "--root", &r]);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("etc/environment.d/90-outpost.conf"),
        "{}",
        out.describe()
    );
    assert!(root
        .path()
        .join("etc/outpost/install-manifest.json")
        .is_file());
    assert!(root.path().join("usr/local/bin/outpost").is_file());
    let out = outpost(&["uninstall", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert_eq!(snapshot(root.path()), before);
}

#[test]
fn an_nss_database_with_a_password_is_skipped_and_the_install_goes_on() {
    let root = staged_root();
    let r = root.path().to_string_lossy().to_string();
    let open_db = root.path().join("home/ana/.pki/nssdb");
    let locked_db = root.path().join("home/bob/.pki/nssdb");
    for db in [&open_db, &locked_db] {
        std::fs::create_dir_all(db).unwrap();
    }
    run_ok(
        "certutil",
        &[
            "-N",
            "--empty-password",
            "-d",
            &format!("sql:{}", open_db.display()),
        ],
    );
    let password = root.path().join("password");
    std::fs::write(&password, "bob's secret\n").unwrap();
    run_ok(
        "certutil",
        &[
            "-N",
            "-f",
            &password.to_string_lossy(),
            "-d",
            &format!("sql:{}", locked_db.display()),
        ],
    );
    let out = outpost(&["install", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stdout_text().contains("skipped"), "{}", out.describe());
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(root.path().join("etc/outpost/install-manifest.json")).unwrap(),
    )
    .unwrap();
    let dbs: Vec<&str> = manifest["trust"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["db"].as_str())
        .collect();
    assert_eq!(dbs, [open_db.to_string_lossy()], "{manifest}");
    let listed = |db: &Path| run_ok("certutil", &["-L", "-d", &format!("sql:{}", db.display())]);
    assert!(listed(&open_db).contains("Outpost CA "));
    assert!(!listed(&locked_db).contains("Outpost CA"));
    let out = outpost(&["uninstall", "--root", &r]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(!listed(&open_db).contains("Outpost CA"));
}
