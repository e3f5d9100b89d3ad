//! The service definition per platform, and starting and stopping it.

use std::path::Path;

use super::layout::{Layout, Mode, Platform, LAUNCHD_LABEL};
use super::{Installer, Options};

const SYSTEMD_UNIT: &str = include_str!("../../installer/systemd/outpost.service");
const SYSTEMD_USER_UNIT: &str = include_str!("../../installer/systemd/outpost-user.service");
const PRUNE_SERVICE: &str = include_str!("../../installer/systemd/outpost-ca-prune.service");
const PRUNE_TIMER: &str = include_str!("../../installer/systemd/outpost-ca-prune.timer");
const LAUNCHD_PLIST: &str = include_str!("../../installer/launchd/com.outpost.agent.plist");

/// The user a Linux system service runs as.
pub const SERVICE_USER: &str = "outpost";

/// A template with `{{BIN}}`, `{{CONFIG}}`, `{{STATE}}`, `{{LOGS}}` filled.
pub fn render(template: &str, layout: &Layout) -> String {
    let text = |p: &Path| p.display().to_string();
    let xml = layout.platform == Platform::Macos;
    let value = |p: &Path| {
        if xml {
            text(p).replace('&', "&amp;").replace('<', "&lt;")
        } else {
            text(p)
        }
    };
    template
        .replace("{{BIN}}", &value(&layout.bin))
        .replace("{{CONFIG}}", &value(&layout.config))
        .replace("{{STATE}}", &value(&layout.state))
        .replace("{{LOGS}}", &value(&layout.logs))
}

/// The files of the service definition: (live path, contents).
pub fn files(layout: &Layout) -> Vec<(std::path::PathBuf, String)> {
    match (layout.platform, layout.mode) {
        (Platform::Linux, mode) => {
            let unit = if mode == Mode::System {
                SYSTEMD_UNIT
            } else {
                SYSTEMD_USER_UNIT
            };
            let dir = layout
                .service
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            vec![
                (layout.service.clone(), render(unit, layout)),
                (
                    dir.join("outpost-ca-prune.service"),
                    render(PRUNE_SERVICE, layout),
                ),
                (
                    dir.join("outpost-ca-prune.timer"),
                    render(PRUNE_TIMER, layout),
                ),
            ]
        }
        (Platform::Macos, _) => vec![(layout.service.clone(), render(LAUNCHD_PLIST, layout))],
        (Platform::Windows, _) => Vec::new(),
    }
}

fn systemctl(layout: &Layout, args: &[&str]) -> Vec<String> {
    let mut command = vec!["systemctl".to_string()];
    if layout.mode == Mode::User {
        command.push("--user".into());
    }
    command.extend(args.iter().map(|a| a.to_string()));
    command
}

fn launchd_domain(layout: &Layout) -> String {
    match layout.mode {
        Mode::System => "system".to_string(),
        Mode::User => format!("gui/{}", super::euid()),
    }
}

/// Start (or restart, on a reinstall) the service. Live installs only.
pub fn start(ins: &mut Installer, layout: &Layout) -> anyhow::Result<()> {
    match layout.platform {
        Platform::Linux if !Path::new("/run/systemd/system").exists() => {
            // A container, or an init that is not systemd: the files are in
            // place for when it is; say how to run the agent meanwhile.
            println!(
                "note: systemd is not running here; start the agent with `{} run --config {}`",
                layout.bin.display(),
                layout.config.display()
            );
        }
        Platform::Linux => {
            ins.run(systemctl(layout, &["daemon-reload"]))?;
            ins.run(systemctl(
                layout,
                &["enable", "outpost.service", "outpost-ca-prune.timer"],
            ))?;
            ins.run(systemctl(layout, &["restart", "outpost.service"]))?;
            ins.run(systemctl(layout, &["start", "outpost-ca-prune.timer"]))?;
        }
        Platform::Macos => {
            let domain = launchd_domain(layout);
            // A previous load (reinstall) is unloaded first; none is fine.
            let _ = ins.try_run(vec![
                "launchctl".into(),
                "bootout".into(),
                format!("{domain}/{LAUNCHD_LABEL}"),
            ]);
            ins.run(vec![
                "launchctl".into(),
                "bootstrap".into(),
                domain,
                layout.service.display().to_string(),
            ])?;
        }
        Platform::Windows => {}
    }
    Ok(())
}

/// Stop and disable the service; failures are said and skipped (it may
/// already be gone).
pub fn stop(options: &Options, layout: &Layout) {
    let commands = match layout.platform {
        Platform::Linux => vec![
            systemctl(
                layout,
                &[
                    "disable",
                    "--now",
                    "outpost.service",
                    "outpost-ca-prune.timer",
                ],
            ),
            systemctl(layout, &["daemon-reload"]),
        ],
        Platform::Macos => vec![vec![
            "launchctl".into(),
            "bootout".into(),
            format!("{}/{LAUNCHD_LABEL}", launchd_domain(layout)),
        ]],
        Platform::Windows => Vec::new(),
    };
    for command in commands {
        println!("run    {}", command.join(" "));
        if !options.dry_run {
            if let Err(e) = super::run_command(&command) {
                println!("  ({e}; continuing)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_with_the_layout_s_paths_and_nothing_is_left_over() {
        for (platform, mode) in [
            (Platform::Linux, Mode::System),
            (Platform::Linux, Mode::User),
            (Platform::Macos, Mode::System),
            (Platform::Macos, Mode::User),
        ] {
            let layout = Layout::new(platform, mode, Some(Path::new("/home/ana"))).unwrap();
            let files = files(&layout);
            assert!(!files.is_empty());
            for (path, text) in &files {
                assert!(!text.contains("{{"), "{}: {text}", path.display());
                let runs = path.extension().is_none_or(|e| e != "timer");
                assert_eq!(
                    text.contains(&layout.bin.display().to_string()),
                    runs,
                    "{}",
                    path.display()
                );
            }
        }
        let mac = Layout::new(Platform::Macos, Mode::System, None).unwrap();
        let plist = &files(&mac)[0].1;
        assert!(
            plist.contains("<string>/Library/Application Support/Outpost/outpost.toml</string>")
        );
        assert!(plist.contains("<string>/Library/Logs/Outpost/outpost.log</string>"));
        let user = Layout::new(Platform::Linux, Mode::User, Some(Path::new("/home/ana"))).unwrap();
        let unit = &files(&user)[0].1;
        assert!(unit.contains("ExecStart=/home/ana/.local/bin/outpost run --config /home/ana/.config/outpost/outpost.toml"));
        assert!(unit.contains("ReadWritePaths=/home/ana/.local/share/outpost"));
        assert!(!unit.contains("User="));
    }
}
