//! Windows: `outpost run --service`, the agent under the service control
//! manager (the service `installer/windows/outpost-service.ps1` registers).
//! Stop and shutdown requests drain in-flight calls like SIGTERM does.

use std::ffi::OsString;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

use crate::config::Config;

/// The service's name, as the installer script registers it.
pub const SERVICE_NAME: &str = "Outpost";

/// The dispatcher calls `service_main` with no way to pass it the config.
static CONFIG: OnceLock<Config> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Hand this thread to the service control manager until the service stops.
pub fn run(config: &Config) -> anyhow::Result<()> {
    let _ = CONFIG.set(config.clone());
    service_dispatcher::start(SERVICE_NAME, ffi_service_main)
        .context("not started by the service control manager (use `outpost run` in a console)")
}

fn service_main(_arguments: Vec<OsString>) {
    if let Err(e) = serve() {
        tracing::error!("service: {e:#}");
    }
}

fn serve() -> anyhow::Result<()> {
    let config = CONFIG.get().context("no config")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stop = Mutex::new(Some(stop));
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            if let Some(stop) = stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = stop.send(());
            }
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let status = service_control_handler::register(SERVICE_NAME, handler)?;
    let report = |state, accepted, code| {
        status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accepted,
            exit_code: ServiceExitCode::Win32(code),
            checkpoint: 0,
            wait_hint: Duration::from_secs(20),
            process_id: None,
        })
    };
    report(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        0,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let result = runtime.block_on(crate::app::run_until(config, async {
        let _ = stopped.await;
    }));
    report(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        u32::from(result.is_err()),
    )?;
    result.map_err(Into::into)
}
