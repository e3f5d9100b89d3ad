//! The files under `installer/`, read the way their platforms read them: the
//! launchd job and the MDM profile are parsed as property lists (Python's
//! `plistlib`), the shell scripts are run (`install.sh` against a staged
//! root, the Debian maintainer scripts with a stand-in `outpost`), and the
//! Windows script, which needs a Windows machine to run, is checked for what
//! it must do and parsed by PowerShell where `pwsh` is installed.
//!
//! Words used here:
//! - **template**: a file with `{{NAME}}` placeholders that `outpost install`
//!   (or an administrator) fills in;
//! - **staged root**: a directory standing in for `/`, given as `--root`;
//! - **tarball layout**: `install.sh` with the `outpost` binary beside it, as
//!   a release archive unpacks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

fn installer_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("installer")
        .join(relative)
}

fn read_installer(relative: &str) -> String {
    let path = installer_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `template` with each `{{NAME}}` replaced by its value. Every name given
/// must occur, and none may be left over.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut filled = template.to_string();
    for (name, value) in values {
        let placeholder = format!("{{{{{name}}}}}");
        assert!(
            filled.contains(&placeholder),
            "{placeholder} is not in the template"
        );
        filled = filled.replace(&placeholder, value);
    }
    assert!(
        !filled.contains("{{"),
        "a placeholder is left unfilled:\n{filled}"
    );
    filled
}

/// Runs `command` with no proxy or Outpost settings inherited from the
/// environment the tests run in.
fn run(command: &mut Command) -> Output {
    for var in [
        "OUTPOST_CONFIG",
        "OUTPOST_BIN",
        "HTTPS_PROXY",
        "https_proxy",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    run(Command::new("id").arg("-u")).stdout.starts_with(b"0\n")
}

// --- Property lists -----------------------------------------------------------

/// A leaf of a property list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Leaf {
    String(String),
    Integer(i64),
    Bool(bool),
    Data(Vec<u8>),
}

/// A parsed property list, flattened: `PayloadContent.0.PayloadType` names
/// the `PayloadType` of the first dict in the `PayloadContent` array.
struct Plist(BTreeMap<String, Leaf>);

/// Python prints one leaf a line, `path<TAB>kind<TAB>hex`: hex so that
/// strings need no escaping and `data` arrives as the bytes it holds.
const FLATTEN_PLIST: &str = r#"
import plistlib, sys

def walk(path, value):
    if isinstance(value, dict):
        for key, item in value.items():
            walk(path + [key], item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            walk(path + [str(i)], item)
    else:
        if isinstance(value, bool):
            kind, raw = "bool", str(value).lower().encode()
        elif isinstance(value, int):
            kind, raw = "integer", str(value).encode()
        elif isinstance(value, bytes):
            kind, raw = "data", value
        elif isinstance(value, str):
            kind, raw = "string", value.encode()
        else:
            kind, raw = type(value).__name__, str(value).encode()
        print(".".join(path), kind, raw.hex(), sep="\t")

walk([], plistlib.load(sys.stdin.buffer, fmt=plistlib.FMT_XML))
"#;

/// `xml` parsed by Python's `plistlib` as an XML property list (a malformed
/// one fails the test with Python's error).
fn parse_plist(xml: &str) -> Plist {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", FLATTEN_PLIST])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (the README lists it among the test requirements)");
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(xml.as_bytes())
        .expect("write the plist to python3");
    let output = child.wait_with_output().expect("python3");
    assert!(
        output.status.success(),
        "not a valid XML plist:\n{}",
        describe(&output)
    );
    let mut leaves = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let &[path, kind, hex] = fields.as_slice() else {
            panic!("unexpected line from python3: {line:?}");
        };
        let raw = unhex(hex);
        let text = || String::from_utf8(raw.clone()).expect("UTF-8 from python3");
        let leaf = match kind {
            "string" => Leaf::String(text()),
            "integer" => Leaf::Integer(text().parse().expect("an integer")),
            "bool" => Leaf::Bool(text() == "true"),
            "data" => Leaf::Data(raw.clone()),
            other => panic!("{path}: a {other}, which these files have no use for"),
        };
        leaves.insert(path.to_string(), leaf);
    }
    Plist(leaves)
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex from python3"))
        .collect()
}

impl Plist {
    fn get(&self, path: &str) -> &Leaf {
        self.0
            .get(path)
            .unwrap_or_else(|| panic!("no {path} in the plist: {:#?}", self.0))
    }

    fn string(&self, path: &str) -> &str {
        match self.get(path) {
            Leaf::String(s) => s,
            other => panic!("{path} is {other:?}, not a string"),
        }
    }

    /// The strings of the array at `path`, in order.
    fn strings(&self, path: &str) -> Vec<&str> {
        (0..)
            .map(|i| format!("{path}.{i}"))
            .take_while(|item| self.0.contains_key(item))
            .map(|item| self.string(&item))
            .collect()
    }

    /// The path of the payload of `payload_type` in a profile's `PayloadContent`.
    fn payload(&self, payload_type: &str) -> String {
        (0..)
            .map(|i| format!("PayloadContent.{i}"))
            .take_while(|p| self.0.contains_key(&format!("{p}.PayloadType")))
            .find(|p| self.string(&format!("{p}.PayloadType")) == payload_type)
            .unwrap_or_else(|| panic!("no {payload_type} payload: {:#?}", self.0))
    }
}

// --- launchd and the MDM profile -----------------------------------------------

#[test]
fn launchd_job_runs_the_agent_with_its_config_and_restarts_it_after_a_crash() {
    // Real macOS paths, spaces and all: a plist needs no quoting.
    let bin = "/usr/local/bin/outpost";
    let config = "/Library/Application Support/Outpost/outpost.toml";
    let state = "/Library/Application Support/Outpost/state";
    let logs = "/Library/Logs/Outpost";
    let filled = fill(
        &read_installer("launchd/com.outpost.agent.plist"),
        &[
            ("BIN", bin),
            ("CONFIG", config),
            ("STATE", state),
            ("LOGS", logs),
        ],
    );
    let job = parse_plist(&filled);

    assert_eq!(job.string("Label"), "com.outpost.agent");
    assert_eq!(
        job.strings("ProgramArguments"),
        [bin, "run", "--config", config]
    );
    assert_eq!(job.get("RunAtLoad"), &Leaf::Bool(true));
    // Restarted unless it exited cleanly (a SIGTERM drain exits 0).
    assert_eq!(job.get("KeepAlive.SuccessfulExit"), &Leaf::Bool(false));
    assert!(
        matches!(job.get("ThrottleInterval"), Leaf::Integer(n) if *n > 0),
        "{:?}",
        job.get("ThrottleInterval")
    );
    assert_eq!(job.string("WorkingDirectory"), state);
    for key in ["StandardOutPath", "StandardErrorPath"] {
        let path = job.string(key);
        assert!(
            path.starts_with(&format!("{logs}/")) && path.len() > logs.len() + 1,
            "{key} = {path} is not a file in {logs}"
        );
    }
    assert_ne!(
        job.string("StandardOutPath"),
        job.string("StandardErrorPath")
    );
    assert_eq!(job.get("Umask"), &Leaf::Integer(0o077));
    assert_eq!(
        job.get("SoftResourceLimits.NumberOfFiles"),
        &Leaf::Integer(8192)
    );
    assert!(
        ["Standard", "Background"].contains(&job.string("ProcessType")),
        "{}",
        job.string("ProcessType")
    );
}

/// A fresh self-signed certificate, DER.
fn self_signed_der(dir: &Path) -> Vec<u8> {
    let der = dir.join("ca.der");
    let key = dir.join("ca.key");
    let out = run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=x"])
        .args(["-days", "1", "-outform", "DER", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&der));
    assert!(out.status.success(), "openssl req:\n{}", describe(&out));
    std::fs::read(&der).expect("openssl wrote the certificate")
}

/// `openssl base64`: wrapped at 64 columns, as a profile built by hand would be.
fn base64_lines(file: &Path) -> String {
    let out = run(Command::new("openssl").args(["base64", "-in"]).arg(file));
    assert!(out.status.success(), "openssl base64:\n{}", describe(&out));
    String::from_utf8(out.stdout).expect("base64 is ASCII")
}

#[test]
fn mdm_profile_trusts_exactly_the_given_ca_and_points_the_system_proxy_at_the_pac() {
    let dir = tempfile::tempdir().unwrap();
    let der = self_signed_der(dir.path());
    let profile_uuid = "0F6C1E8A-3B0B-4C1E-9A59-1D2A8C0E7B11";
    let ca_uuid = "6A7E3B1C-2D44-4F0B-8E21-5C9B0A7D3E22";
    let proxy_uuid = "B3C9D2E1-7F60-4A8D-9C35-0E1F2A3B4C33";
    let filled = fill(
        &read_installer("macos/outpost-ca.mobileconfig"),
        &[
            ("CA_DER_BASE64", &base64_lines(&dir.path().join("ca.der"))),
            ("PROFILE_UUID", profile_uuid),
            ("CA_UUID", ca_uuid),
            ("PROXY_UUID", proxy_uuid),
            ("ORGANIZATION", "Example Corp"),
        ],
    );
    let profile = parse_plist(&filled);

    assert_eq!(profile.string("PayloadType"), "Configuration");
    assert_eq!(profile.get("PayloadVersion"), &Leaf::Integer(1));
    assert_eq!(profile.string("PayloadScope"), "System");
    assert_eq!(profile.string("PayloadUUID"), profile_uuid);
    assert_eq!(profile.string("PayloadOrganization"), "Example Corp");

    let ca = profile.payload("com.apple.security.root");
    assert_eq!(
        profile.get(&format!("{ca}.PayloadContent")),
        &Leaf::Data(der),
        "the root payload does not hold the certificate's DER"
    );
    assert_eq!(profile.string(&format!("{ca}.PayloadUUID")), ca_uuid);

    let proxy = profile.payload("com.apple.proxy.http.global");
    assert_eq!(profile.string(&format!("{proxy}.ProxyType")), "Auto");
    assert_eq!(
        profile.string(&format!("{proxy}.ProxyPACURL")),
        "http://127.0.0.1:8878/proxy.pac"
    );
    assert_eq!(profile.string(&format!("{proxy}.PayloadUUID")), proxy_uuid);

    // Every payload carries the keys profile installation requires, and its
    // identifier is its own.
    let mut identifiers = vec![profile.string("PayloadIdentifier")];
    for payload in [&ca, &proxy] {
        assert_eq!(
            profile.get(&format!("{payload}.PayloadVersion")),
            &Leaf::Integer(1)
        );
        assert!(!profile
            .string(&format!("{payload}.PayloadDisplayName"))
            .is_empty());
        identifiers.push(profile.string(&format!("{payload}.PayloadIdentifier")));
    }
    let distinct: std::collections::BTreeSet<_> = identifiers.iter().collect();
    assert_eq!(distinct.len(), identifiers.len(), "{identifiers:?}");
}

// --- Windows ------------------------------------------------------------------------

/// The text of `function NAME { ... }` in a PowerShell script (up to the
/// first line that is a lone `}`).
fn powershell_function<'a>(script: &'a str, name: &str) -> &'a str {
    let start = script
        .find(&format!("function {name} {{"))
        .unwrap_or_else(|| panic!("no function {name}"));
    let end = script[start..]
        .find("\n}\n")
        .unwrap_or_else(|| panic!("function {name} does not end"));
    &script[start..start + end]
}

#[test]
fn windows_script_installs_the_outpost_service_and_uninstalls_from_its_manifest() {
    let script = read_installer("windows/outpost-service.ps1");
    // Windows PowerShell 5.1 reads a file without a byte-order mark as ANSI.
    assert!(script.is_ascii(), "outpost-service.ps1 must be plain ASCII");

    for needle in [
        "[ValidateSet('Install', 'Uninstall')]",
        "[string]$Action = 'Install'",
        "[string]$Binary",
        "[switch]$KeepState",
        "$ServiceName = 'Outpost'",
        "$ServiceDisplayName = 'Outpost LLM edge agent'",
        "Join-Path $env:ProgramFiles 'Outpost'",
        "Join-Path $env:ProgramData 'Outpost'",
        "'install-manifest.json'",
        "$RootStore = 'Cert:\\LocalMachine\\Root'",
        "run as Administrator",
    ] {
        assert!(script.contains(needle), "{needle} is missing");
    }
    assert!(script.contains("'Install' { Install-Outpost }"));
    assert!(script.contains("'Uninstall' { Uninstall-Outpost }"));

    let service = powershell_function(&script, "Install-Service");
    for needle in [
        r#"'"{0}" run --service --config "{1}"' -f $Exe, $Config"#,
        "New-Service",
        "-StartupType Automatic",
        "'reset=', '86400', 'actions=', 'restart/2000/restart/2000/restart/10000'",
    ] {
        assert!(
            service.contains(needle),
            "Install-Service: {needle} is missing"
        );
    }

    // The state directory (CA key, audit log, ledger): SYSTEM and Administrators
    // only, by well-known SID, inheritance cut.
    let acl = powershell_function(&script, "Set-DirectoryAcl");
    assert!(acl.contains("'/inheritance:r', '/grant:r'"), "{acl}");
    assert!(script.contains("$SystemSid = '*S-1-5-18'"));
    assert!(script.contains("$AdministratorsSid = '*S-1-5-32-544'"));
    let install = powershell_function(&script, "Install-Outpost");
    for needle in [
        r#"Set-DirectoryAcl $StateDir @("${SystemSid}:(OI)(CI)F", "${AdministratorsSid}:(OI)(CI)F")"#,
        "Install-Certificate",
        "Install-Service",
        "Start-Service",
    ] {
        assert!(
            install.contains(needle),
            "Install-Outpost: {needle} is missing"
        );
    }
    let certificate = powershell_function(&script, "Install-Certificate");
    assert!(certificate.contains("& $Exe ca export --config $Config"));
    assert!(
        certificate.contains("Import-Certificate -FilePath $CaPem -CertStoreLocation $RootStore")
    );
    assert!(certificate.contains("$Manifest.cert_thumbprint = $thumbprint"));

    // The machine environment: the proxy and Node's extra CA; no OpenSSL-style
    // bundle variables, which would replace the programs' whole trust lists.
    for variable in [
        "HTTPS_PROXY         = 'http://127.0.0.1:8877'",
        "NO_PROXY            = 'localhost,127.0.0.1,::1,.local'",
        "NODE_EXTRA_CA_CERTS = $CaPem",
        "NODE_USE_ENV_PROXY  = '1'",
    ] {
        assert!(script.contains(variable), "{variable} is missing");
    }
    for absent in [
        "SSL_CERT_FILE =",
        "REQUESTS_CA_BUNDLE =",
        "CURL_CA_BUNDLE =",
    ] {
        assert!(!script.contains(absent), "{absent} is set");
    }

    // Uninstall works from the manifest alone: what it recorded, it reverses.
    let uninstall = powershell_function(&script, "Uninstall-Outpost");
    for needle in [
        "Test-Path -LiteralPath $ManifestPath",
        "$manifest = Read-Manifest",
        "$manifest.service",
        "$entry.previous",
        "$manifest.cert_thumbprint",
        "$manifest.created_files",
        "$manifest.replaced_files",
        "$manifest.created_dirs",
        "-not $KeepState",
        "Remove-Item -LiteralPath $ManifestPath",
    ] {
        assert!(
            uninstall.contains(needle),
            "Uninstall-Outpost: {needle} is missing"
        );
    }

    if on_path("pwsh") {
        let path = installer_path("windows/outpost-service.ps1");
        let check = format!(
            "$tokens = $null; $errors = $null; \
             [void][System.Management.Automation.Language.Parser]::ParseFile('{}', [ref]$tokens, [ref]$errors); \
             $errors | ForEach-Object {{ $_.ToString() }}; exit $errors.Count",
            path.display()
        );
        let out =
            run(Command::new("pwsh").args(["-NoProfile", "-NonInteractive", "-Command", &check]));
        assert!(
            out.status.success(),
            "PowerShell cannot parse the script:\n{}",
            describe(&out)
        );
    } else {
        eprintln!("pwsh is not installed: outpost-service.ps1 checked as text only");
    }
}

/// The config the Windows script writes, with its paths filled in.
fn windows_config(state: &Path, policy: &Path) -> String {
    let script = read_installer("windows/outpost-service.ps1");
    let start = script
        .find("$ConfigTemplate = @'\n")
        .expect("the config template")
        + "$ConfigTemplate = @'\n".len();
    let end = start + script[start..].find("\n'@").expect("the template's end");
    // As the script does: forward slashes, which TOML takes without escapes.
    fill(
        &script[start..end],
        &[
            ("STATE", &state.display().to_string().replace('\\', "/")),
            ("POLICY", &policy.display().to_string().replace('\\', "/")),
        ],
    )
}

#[test]
fn windows_config_is_one_the_agent_accepts_and_keeps_the_ca_key_in_its_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let policy = dir.path().join("policy");
    std::fs::create_dir(&policy).unwrap();
    let config = dir.path().join("outpost.toml");
    std::fs::write(&config, windows_config(&state, &policy)).unwrap();

    // What the script runs to get the certificate it imports.
    let out = run(Command::new(OUTPOST)
        .args(["ca", "export", "--config"])
        .arg(&config));
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(
        state.join("ca/ca.key").is_file(),
        "the CA key is not a file under state_dir"
    );
}

// --- install.sh ----------------------------------------------------------------------

/// A release tarball unpacked: `install.sh` and the `outpost` binary side by side.
fn tarball_layout(dir: &Path) -> PathBuf {
    let unpacked = dir.join("outpost-release");
    std::fs::create_dir(&unpacked).unwrap();
    std::fs::copy(installer_path("install.sh"), unpacked.join("install.sh")).unwrap();
    // A hard link is the copy without its cost (the debug binary is large).
    let bin = unpacked.join("outpost");
    if std::fs::hard_link(OUTPOST, &bin).is_err() {
        std::fs::copy(OUTPOST, &bin).unwrap();
    }
    unpacked
}

/// A root with the Debian trust store that a staged `update-ca-certificates` writes to.
fn staged_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for sub in [
        "etc/ssl/certs",
        "etc/ca-certificates/update.d",
        "usr/share/ca-certificates",
    ] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("etc/ca-certificates.conf"), "").unwrap();
    root
}

fn install_sh(unpacked: &Path, args: &[&str]) -> Output {
    run(Command::new("sh")
        .arg(unpacked.join("install.sh"))
        .args(args)
        .current_dir(unpacked))
}

#[test]
fn install_sh_is_posix_sh() {
    let path = installer_path("install.sh");
    let out = run(Command::new("sh").arg("-n").arg(&path));
    assert!(out.status.success(), "{}", describe(&out));
    if on_path("shellcheck") {
        let out = run(Command::new("shellcheck").args(["-s", "sh"]).arg(&path));
        assert!(out.status.success(), "{}", describe(&out));
    }
}

#[test]
fn install_sh_from_a_tarball_stages_an_install_and_uninstalls_it() {
    let dir = tempfile::tempdir().unwrap();
    let unpacked = tarball_layout(dir.path());
    let root = staged_root(dir.path());
    let r = root.to_str().unwrap();
    let manifest = root.join("etc/outpost/install-manifest.json");

    let out = install_sh(&unpacked, &["--root", r]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(manifest.is_file(), "no manifest:\n{}", describe(&out));
    assert!(root.join("usr/local/bin/outpost").is_file());
    assert!(root.join("etc/systemd/system/outpost.service").is_file());

    let out = install_sh(&unpacked, &["--uninstall", "--root", r]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!manifest.exists(), "the manifest is still there");
    assert!(!root.join("etc/outpost").exists());
    assert!(!root.join("usr/local/bin/outpost").exists());
}

#[test]
fn install_sh_live_install_needs_root_and_a_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let unpacked = tarball_layout(dir.path());
    let live_manifest = Path::new("/etc/outpost/install-manifest.json");
    let installed_before = live_manifest.exists();

    if !is_root() {
        let out = install_sh(&unpacked, &[]);
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("run as root (sudo)"),
            "{}",
            describe(&out)
        );
    } else {
        let out = install_sh(&unpacked, &["--dry-run"]);
        assert!(out.status.success(), "{}", describe(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("/etc/systemd/system/outpost.service"),
            "the dry run does not say what it would write:\n{stdout}"
        );
        assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");
    }
    assert_eq!(
        live_manifest.exists(),
        installed_before,
        "the live system was changed"
    );
}

#[test]
fn install_sh_stops_before_any_change_when_the_binary_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let unpacked = dir.path().join("outpost-release");
    std::fs::create_dir(&unpacked).unwrap();
    std::fs::copy(installer_path("install.sh"), unpacked.join("install.sh")).unwrap();
    // Stands in for a binary built for another CPU.
    let bin = unpacked.join("outpost");
    std::fs::write(
        &bin,
        "#!/bin/sh\necho 'cannot execute binary file: Exec format error' >&2\nexit 126\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let root = dir.path().join("root");

    let out = install_sh(&unpacked, &["--root", root.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not run on this machine"),
        "{}",
        describe(&out)
    );
    assert!(!root.exists(), "something was staged");
}

// --- Debian maintainer scripts -----------------------------------------------------

/// A maintainer script with `/usr/bin/outpost` replaced by a stand-in that
/// appends its arguments to `calls` (and exits `code`), and the purged
/// directories moved under `dir`.
struct MaintainerScript {
    script: PathBuf,
    calls: PathBuf,
}

impl MaintainerScript {
    fn new(dir: &Path, name: &str, code: i32) -> Self {
        let calls = dir.join("calls");
        let stand_in = dir.join("outpost");
        std::fs::write(
            &stand_in,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexit {code}\n",
                calls.display()
            ),
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let text = read_installer(&format!("debian/{name}"))
            .replace("/usr/bin/outpost", stand_in.to_str().unwrap())
            .replace(
                "/var/lib/outpost",
                dir.join("var/lib/outpost").to_str().unwrap(),
            )
            .replace("/etc/outpost", dir.join("etc/outpost").to_str().unwrap());
        let script = dir.join(name);
        std::fs::write(&script, text).unwrap();
        MaintainerScript { script, calls }
    }

    /// Runs the script as dpkg would, with `args`; the exit status and the
    /// stand-in's calls.
    fn run(&self, args: &[&str]) -> (bool, Vec<String>) {
        let _ = std::fs::remove_file(&self.calls);
        let out = run(Command::new("sh").arg(&self.script).args(args));
        let calls = std::fs::read_to_string(&self.calls).unwrap_or_default();
        (
            out.status.success(),
            calls.lines().map(String::from).collect(),
        )
    }
}

#[test]
fn debian_scripts_are_posix_sh_with_the_debhelper_token() {
    for name in ["postinst", "prerm", "postrm"] {
        let path = installer_path(&format!("debian/{name}"));
        let out = run(Command::new("sh").arg("-n").arg(&path));
        assert!(out.status.success(), "{name}: {}", describe(&out));
        let text = read_installer(&format!("debian/{name}"));
        assert!(text.lines().any(|l| l == "set -e"), "{name}: no set -e");
        assert!(
            text.lines().any(|l| l == "#DEBHELPER#"),
            "{name}: no #DEBHELPER#"
        );
        if on_path("shellcheck") {
            let out = run(Command::new("shellcheck").args(["-s", "sh"]).arg(&path));
            assert!(out.status.success(), "{name}: {}", describe(&out));
        }
    }
}

#[test]
fn postinst_installs_on_configure_and_after_an_aborted_removal() {
    let dir = tempfile::tempdir().unwrap();
    let postinst = MaintainerScript::new(dir.path(), "postinst", 0);
    let install = vec!["install --system".to_string()];
    assert_eq!(
        postinst.run(&["configure", "0.1.0"]),
        (true, install.clone())
    );
    assert_eq!(postinst.run(&["configure", ""]), (true, install.clone()));
    assert_eq!(postinst.run(&["abort-remove"]), (true, install.clone()));
    assert_eq!(postinst.run(&["abort-upgrade", "0.2.0"]), (true, vec![]));
    assert!(!postinst.run(&["no-such-action"]).0);

    // A failed install fails the package's configuration, for dpkg to report.
    let dir = tempfile::tempdir().unwrap();
    let failing = MaintainerScript::new(dir.path(), "postinst", 1);
    assert_eq!(failing.run(&["configure", "0.1.0"]), (false, install));
}

#[test]
fn prerm_uninstalls_keeping_state_on_removal_and_leaves_upgrades_alone() {
    let dir = tempfile::tempdir().unwrap();
    let prerm = MaintainerScript::new(dir.path(), "prerm", 0);
    let uninstall = vec!["uninstall --keep-state".to_string()];
    assert_eq!(prerm.run(&["remove"]), (true, uninstall.clone()));
    assert_eq!(
        prerm.run(&["deconfigure", "in-favour", "other", "1.0"]),
        (true, uninstall)
    );
    assert_eq!(prerm.run(&["upgrade", "0.2.0"]), (true, vec![]));
    assert_eq!(prerm.run(&["failed-upgrade", "0.1.0"]), (true, vec![]));
}

#[test]
fn postrm_removes_config_and_state_on_purge_only() {
    let dir = tempfile::tempdir().unwrap();
    let postrm = MaintainerScript::new(dir.path(), "postrm", 0);
    let state = dir.path().join("var/lib/outpost");
    let config = dir.path().join("etc/outpost");
    for d in [&state, &config] {
        std::fs::create_dir_all(d.join("ca")).unwrap();
        std::fs::write(d.join("ca/ca.key"), "key").unwrap();
    }
    for action in ["remove", "upgrade"] {
        assert_eq!(postrm.run(&[action]), (true, vec![]));
        assert!(state.exists() && config.exists(), "{action} removed them");
    }
    assert_eq!(postrm.run(&["purge"]), (true, vec![]));
    assert!(!state.exists(), "purge kept {}", state.display());
    assert!(!config.exists(), "purge kept {}", config.display());
}

// --- The .deb ------------------------------------------------------------------------

#[test]
fn deb_metadata_names_files_that_exist() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let deb = manifest
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("a [package.metadata.deb] section");
    let deb = deb.split("\n[").next().unwrap_or(deb);
    assert!(deb.contains(r#"maintainer-scripts = "installer/debian/""#));
    let sources: Vec<&str> = deb
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[\""))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert!(sources.contains(&"target/release/outpost"), "{sources:?}");
    for source in sources {
        if source.starts_with("target/") {
            continue;
        }
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(source).is_file(),
            "the .deb lists {source}, which does not exist"
        );
    }
}
