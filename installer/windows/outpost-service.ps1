<#
.SYNOPSIS
    Installs or uninstalls Outpost, the endpoint edge agent for LLM traffic, as a
    Windows service.

.DESCRIPTION
    Install puts the binary in %ProgramFiles%\Outpost, the config and the policy and
    state directories in %ProgramData%\Outpost, creates the service "Outpost"
    (automatic start, restarted on failure), adds the agent's CA to the machine's
    trusted roots, and sets the proxy environment for every process started after it.
    Each change is written to %ProgramData%\Outpost\install-manifest.json as soon as
    it is made, so that an install which fails half-way can still be uninstalled.

    Uninstall reverses exactly what the manifest lists: the environment variables get
    their previous values back, the certificate is removed by thumbprint, the service
    is stopped and deleted, and the files and directories install created are removed
    (a file changed since, such as an edited config, is kept and named). The state
    directory (CA key, audit log, budget ledger) goes too, unless -KeepState.

    Both are idempotent. Needs Windows PowerShell 5.1 or later, run as Administrator.

.PARAMETER Action
    Install (the default) or Uninstall.

.PARAMETER Binary
    The outpost.exe to install; by default the one next to this script.

.PARAMETER KeepState
    Uninstall: keep %ProgramData%\Outpost\state.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File .\outpost-service.ps1 -Binary .\outpost.exe

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File .\outpost-service.ps1 -Action Uninstall -KeepState
#>
[CmdletBinding()]
param(
    [ValidateSet('Install', 'Uninstall')]
    [string]$Action = 'Install',
    [string]$Binary,
    [switch]$KeepState
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

$ServiceName = 'Outpost'
$ServiceDisplayName = 'Outpost LLM edge agent'
$InstallDir = Join-Path $env:ProgramFiles 'Outpost'
$Exe = Join-Path $InstallDir 'outpost.exe'
$DataDir = Join-Path $env:ProgramData 'Outpost'
$Config = Join-Path $DataDir 'outpost.toml'
$PolicyDir = Join-Path $DataDir 'policy'
$StateDir = Join-Path $DataDir 'state'
$CaPem = Join-Path $DataDir 'outpost-ca.pem'
$BackupDir = Join-Path $DataDir 'install-backups'
$ManifestPath = Join-Path $DataDir 'install-manifest.json'
$RootStore = 'Cert:\LocalMachine\Root'

# Well-known SIDs rather than names: "Administrators" is "Administratoren" on a
# German Windows.
$SystemSid = '*S-1-5-18'
$AdministratorsSid = '*S-1-5-32-544'
$UsersSid = '*S-1-5-32-545'

# The config install writes when there is none (an existing one is kept). TOML basic
# strings read a backslash as an escape, so paths are written with forward slashes,
# which Windows takes as well.
$ConfigTemplate = @'
# Outpost agent configuration (see the README for every key).
state_dir = "{{STATE}}"
policy_dir = "{{POLICY}}"
# The CA key in a file under state_dir, whose ACL admits only SYSTEM and
# Administrators. Not the Credential Manager: its vault is per user, and the
# administrator who ran the installer is not the LocalSystem account the service runs as.
ca_key_store = "file"
'@

# The proxy environment for every process started after install. Windows variable
# names are case-insensitive: HTTPS_PROXY is https_proxy too, and NO_PROXY no_proxy.
#
# Unlike Linux, no SSL_CERT_FILE, REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE: schannel
# (curl.exe, .NET, Edge, Chrome) and most native tools trust the Root store, where
# the CA goes, and Windows has no system PEM bundle for those variables to name (each
# replaces a program's whole trust list). Node keeps its own list, hence
# NODE_EXTRA_CA_CERTS; Python's certifi ignores the store too (use `truststore`).
$ProxyEnvironment = [ordered]@{
    HTTPS_PROXY         = 'http://127.0.0.1:8877'
    NO_PROXY            = 'localhost,127.0.0.1,::1,.local'
    NODE_EXTRA_CA_CERTS = $CaPem
    NODE_USE_ENV_PROXY  = '1'
}

function Assert-Administrator {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        throw 'outpost-service.ps1 changes the machine: run as Administrator (an elevated PowerShell).'
    }
}

# Runs a program, failing on a non-zero exit; its output goes to the console.
function Invoke-Checked {
    param([string]$Program, [string[]]$Arguments)
    & $Program @Arguments | Out-Host
    if ($LASTEXITCODE -ne 0) {
        throw "$Program $($Arguments -join ' ') failed (exit code $LASTEXITCODE)"
    }
}

function Get-Sha256 {
    param([byte[]]$Bytes)
    $sha = [Security.Cryptography.SHA256]::Create()
    try { return [BitConverter]::ToString($sha.ComputeHash($Bytes)).Replace('-', '') }
    finally { $sha.Dispose() }
}

# --- The manifest -------------------------------------------------------------

function Read-Manifest {
    $manifest = [ordered]@{
        version         = 1
        created_dirs    = New-Object Collections.ArrayList  # outermost first
        created_files   = New-Object Collections.ArrayList  # { path, sha256 }
        replaced_files  = New-Object Collections.ArrayList  # { path, backup }
        service         = $null
        cert_thumbprint = $null
        env             = New-Object Collections.ArrayList  # { name, previous }
    }
    if (-not (Test-Path -LiteralPath $ManifestPath)) { return $manifest }
    $saved = Get-Content -LiteralPath $ManifestPath -Raw | ConvertFrom-Json
    foreach ($property in $saved.PSObject.Properties) {
        if (-not $manifest.Contains($property.Name)) { continue }
        if ($manifest[$property.Name] -is [Collections.ArrayList]) {
            foreach ($item in @($property.Value)) {
                if ($null -ne $item) { [void]$manifest[$property.Name].Add($item) }
            }
        } else {
            $manifest[$property.Name] = $property.Value
        }
    }
    return $manifest
}

function Save-Manifest {
    param($Manifest)
    $json = ConvertTo-Json -InputObject $Manifest -Depth 5
    [IO.File]::WriteAllText($ManifestPath, $json, (New-Object Text.UTF8Encoding($false)))
}

function Find-Entry {
    param($List, [string]$Key, [string]$Value)
    foreach ($entry in $List) {
        if ($entry.$Key -eq $Value) { return $entry }
    }
    return $null
}

# --- Install steps --------------------------------------------------------------

function New-OwnedDirectory {
    param($Manifest, [string]$Path)
    $missing = @()
    $at = $Path
    while ($at -and -not (Test-Path -LiteralPath $at)) {
        $missing = @($at) + $missing
        $at = Split-Path -Parent $at
    }
    foreach ($dir in $missing) {
        Write-Host "create $dir\"
        [void](New-Item -ItemType Directory -Path $dir)
        if (-not ($Manifest.created_dirs -contains $dir)) { [void]$Manifest.created_dirs.Add($dir) }
        # The manifest itself lives in the first directory made; save once it exists.
        if (Test-Path -LiteralPath $DataDir) { Save-Manifest $Manifest }
    }
}

# Writes $Bytes to $Path unless it holds them already. A file install did not create
# is backed up first, for uninstall to restore. Returns whether it wrote.
function Install-File {
    param($Manifest, [string]$Path, [byte[]]$Bytes)
    $sha256 = Get-Sha256 $Bytes
    $ours = Find-Entry $Manifest.created_files 'path' $Path
    if (Test-Path -LiteralPath $Path) {
        if ((Get-Sha256 ([IO.File]::ReadAllBytes($Path))) -eq $sha256) {
            Write-Host "keep   $Path (already as installed)"
            return $false
        }
        if ($null -eq $ours -and $null -eq (Find-Entry $Manifest.replaced_files 'path' $Path)) {
            New-OwnedDirectory $Manifest $BackupDir
            $backup = Join-Path $BackupDir ((Get-Sha256 ([Text.Encoding]::UTF8.GetBytes($Path.ToLowerInvariant()))) + '-' + (Split-Path -Leaf $Path))
            Write-Host "backup $Path -> $backup"
            Copy-Item -LiteralPath $Path -Destination $backup -Force
            [void]$Manifest.replaced_files.Add([ordered]@{ path = $Path; backup = $backup })
        }
    }
    New-OwnedDirectory $Manifest (Split-Path -Parent $Path)
    Write-Host "write  $Path"
    [IO.File]::WriteAllBytes($Path, $Bytes)
    if ($null -ne $ours) {
        $ours.sha256 = $sha256
    } elseif ($null -eq (Find-Entry $Manifest.replaced_files 'path' $Path)) {
        [void]$Manifest.created_files.Add([ordered]@{ path = $Path; sha256 = $sha256 })
    }
    Save-Manifest $Manifest
    return $true
}

# icacls: inheritance off, then exactly these grants.
function Set-DirectoryAcl {
    param([string]$Path, [string[]]$Grants)
    Write-Host "acl    $Path\ ($($Grants -join ', '))"
    $arguments = @($Path, '/inheritance:r', '/grant:r') + $Grants
    Invoke-Checked 'icacls.exe' $arguments
}

function Stop-OutpostService {
    $service = Get-CimInstance -ClassName Win32_Service -Filter "Name='$ServiceName'"
    if ($null -eq $service -or $service.State -eq 'Stopped') { return }
    Write-Host "stop   service $ServiceName"
    Stop-Service -Name $ServiceName -Force
    # The service reports Stopped before its process has exited, and outpost.exe
    # stays locked until then.
    if ($service.ProcessId -ne 0) {
        Wait-Process -Id $service.ProcessId -Timeout 30 -ErrorAction SilentlyContinue
    }
}

function Install-Service {
    param($Manifest)
    $binaryPath = '"{0}" run --service --config "{1}"' -f $Exe, $Config
    $existing = Get-CimInstance -ClassName Win32_Service -Filter "Name='$ServiceName'"
    if ($null -eq $existing) {
        Write-Host "create service $ServiceName"
        [void](New-Service -Name $ServiceName -DisplayName $ServiceDisplayName `
                -Description 'Local HTTPS proxy that applies guardrails, budgets and audit to LLM API calls.' `
                -BinaryPathName $binaryPath -StartupType Automatic)
        $Manifest.service = $ServiceName
        Save-Manifest $Manifest
    } elseif ($Manifest.service -ne $ServiceName) {
        throw "a service named $ServiceName exists that this script did not create (it is not in $ManifestPath): remove it first (sc.exe delete $ServiceName)"
    } elseif ($existing.PathName -ne $binaryPath -or $existing.StartMode -ne 'Auto') {
        # Through CIM, not `sc.exe config binPath=`: Windows PowerShell 5.1 mangles
        # the quotes inside a native command's argument.
        Write-Host "update service $ServiceName"
        $result = Invoke-CimMethod -InputObject $existing -MethodName Change `
            -Arguments @{ PathName = $binaryPath; StartMode = 'Automatic' }
        if ($result.ReturnValue -ne 0) {
            throw "cannot update service ${ServiceName}: Win32_Service.Change returned $($result.ReturnValue)"
        }
    }
    # Restart after 2 s, 2 s, then every 10 s; the count resets after a day up.
    # failureflag 1: also when the agent exits with an error, not only on a crash.
    Invoke-Checked 'sc.exe' @('failure', $ServiceName, 'reset=', '86400', 'actions=', 'restart/2000/restart/2000/restart/10000')
    Invoke-Checked 'sc.exe' @('failureflag', $ServiceName, '1')
}

# Exports the CA (made now if there is none) and trusts it machine-wide.
function Install-Certificate {
    param($Manifest)
    $pem = & $Exe ca export --config $Config
    if ($LASTEXITCODE -ne 0) { throw "$Exe ca export failed (exit code $LASTEXITCODE)" }
    $text = (@($pem) -join "`n") + "`n"
    [void](Install-File $Manifest $CaPem ([Text.Encoding]::ASCII.GetBytes($text)))

    $certificate = Import-Certificate -FilePath $CaPem -CertStoreLocation $RootStore
    $thumbprint = $certificate.Thumbprint
    Write-Host "trust  $RootStore\$thumbprint"
    # A CA rotated since the last install: the old one is no longer ours to trust.
    $previous = $Manifest.cert_thumbprint
    if ($previous -and $previous -ne $thumbprint -and (Test-Path -LiteralPath "$RootStore\$previous")) {
        Write-Host "untrust $RootStore\$previous (replaced)"
        Remove-Item -LiteralPath "$RootStore\$previous"
    }
    $Manifest.cert_thumbprint = $thumbprint
    Save-Manifest $Manifest
}

function Set-MachineVariable {
    param($Manifest, [string]$Name, [string]$Value)
    # The first install's view of the previous value is the one uninstall restores;
    # on a reinstall the current value is our own.
    if ($null -eq (Find-Entry $Manifest.env 'name' $Name)) {
        $previous = [Environment]::GetEnvironmentVariable($Name, 'Machine')
        [void]$Manifest.env.Add([ordered]@{ name = $Name; previous = $previous })
        Save-Manifest $Manifest
    }
    Write-Host "set    $Name=$Value (machine)"
    [Environment]::SetEnvironmentVariable($Name, $Value, 'Machine')
}

function Install-Outpost {
    if (-not $Binary) { $Binary = Join-Path $PSScriptRoot 'outpost.exe' }
    if (-not (Test-Path -LiteralPath $Binary -PathType Leaf)) {
        throw "no outpost binary at ${Binary}: pass -Binary C:\path\to\outpost.exe"
    }
    $Binary = (Resolve-Path -LiteralPath $Binary).ProviderPath
    $version = & $Binary --version
    if ($LASTEXITCODE -ne 0) { throw "$Binary does not run (--version exit code $LASTEXITCODE)" }
    Write-Host "installing $version"

    $manifest = Read-Manifest
    New-OwnedDirectory $manifest $DataDir
    Save-Manifest $manifest
    # Everyone may read the config, the policy and the CA certificate; only
    # SYSTEM and Administrators may change them.
    Set-DirectoryAcl $DataDir @("${SystemSid}:(OI)(CI)F", "${AdministratorsSid}:(OI)(CI)F", "${UsersSid}:(OI)(CI)RX")

    # The binary: a running service holds outpost.exe open, so stop it before
    # replacing it (it is started again below).
    $bytes = [IO.File]::ReadAllBytes($Binary)
    if ((Test-Path -LiteralPath $Exe) -and (Get-Sha256 ([IO.File]::ReadAllBytes($Exe))) -ne (Get-Sha256 $bytes)) {
        Stop-OutpostService
    }
    [void](Install-File $manifest $Exe $bytes)

    if (-not (Test-Path -LiteralPath $Config)) {
        $toml = $ConfigTemplate.Replace('{{STATE}}', $StateDir.Replace('\', '/')).Replace('{{POLICY}}', $PolicyDir.Replace('\', '/'))
        [void](Install-File $manifest $Config ([Text.Encoding]::UTF8.GetBytes($toml)))
    }
    New-OwnedDirectory $manifest $PolicyDir
    New-OwnedDirectory $manifest $StateDir
    # The CA key, the audit log and the ledger: SYSTEM (the service) and
    # Administrators only.
    Set-DirectoryAcl $StateDir @("${SystemSid}:(OI)(CI)F", "${AdministratorsSid}:(OI)(CI)F")

    Install-Service $manifest
    Install-Certificate $manifest
    foreach ($name in $ProxyEnvironment.Keys) {
        Set-MachineVariable $manifest $name $ProxyEnvironment[$name]
    }
    Save-Manifest $manifest

    Write-Host "start  service $ServiceName"
    Start-Service -Name $ServiceName
    Write-Host "installed; the manifest is $ManifestPath"
    Write-Host 'Programs started from now on get the proxy environment (sign out and in for Explorer and open terminals).'
}

# --- Uninstall ------------------------------------------------------------------

function Uninstall-Outpost {
    if (-not (Test-Path -LiteralPath $ManifestPath)) {
        Write-Host "nothing to do: no install manifest at $ManifestPath"
        return
    }
    $manifest = Read-Manifest

    if ($manifest.service) {
        Stop-OutpostService
        if ($null -ne (Get-CimInstance -ClassName Win32_Service -Filter "Name='$($manifest.service)'")) {
            Write-Host "delete service $($manifest.service)"
            Invoke-Checked 'sc.exe' @('delete', $manifest.service)
        }
    }

    # In reverse, so that the value before the first install is the one left.
    for ($i = $manifest.env.Count - 1; $i -ge 0; $i--) {
        $entry = $manifest.env[$i]
        if ($null -eq $entry.previous) {
            Write-Host "unset  $($entry.name) (machine)"
        } else {
            Write-Host "restore $($entry.name)=$($entry.previous) (machine)"
        }
        # A null or empty value deletes the variable.
        [Environment]::SetEnvironmentVariable($entry.name, $entry.previous, 'Machine')
    }

    $thumbprint = $manifest.cert_thumbprint
    if ($thumbprint -and (Test-Path -LiteralPath "$RootStore\$thumbprint")) {
        Write-Host "untrust $RootStore\$thumbprint"
        Remove-Item -LiteralPath "$RootStore\$thumbprint"
    }

    foreach ($file in $manifest.created_files) {
        if (-not (Test-Path -LiteralPath $file.path)) { continue }
        if ((Get-Sha256 ([IO.File]::ReadAllBytes($file.path))) -ne $file.sha256) {
            Write-Host "keep   $($file.path) (changed since install)"
            continue
        }
        # `outpost uninstall` runs this script from the installed outpost.exe,
        # which Windows will not delete while it runs: the rest goes on.
        try {
            Remove-Item -LiteralPath $file.path -Force
            Write-Host "remove $($file.path)"
        } catch {
            Write-Host "keep   $($file.path) (in use; delete it once it has exited: $($_.Exception.Message))"
        }
    }
    foreach ($file in $manifest.replaced_files) {
        Write-Host "restore $($file.path)"
        Copy-Item -LiteralPath $file.backup -Destination $file.path -Force
        Remove-Item -LiteralPath $file.backup -Force
    }

    if (-not $KeepState -and (Test-Path -LiteralPath $StateDir)) {
        Write-Host "remove $StateDir\"
        Remove-Item -LiteralPath $StateDir -Recurse -Force
    }
    Write-Host "remove $ManifestPath"
    Remove-Item -LiteralPath $ManifestPath -Force

    # Innermost first, and only what is empty now: never a directory someone filled.
    for ($i = $manifest.created_dirs.Count - 1; $i -ge 0; $i--) {
        $dir = $manifest.created_dirs[$i]
        if (-not (Test-Path -LiteralPath $dir)) { continue }
        if ($KeepState -and $dir.StartsWith($StateDir, [StringComparison]::OrdinalIgnoreCase)) { continue }
        if (@(Get-ChildItem -LiteralPath $dir -Force).Count -eq 0) {
            Write-Host "remove $dir\"
            Remove-Item -LiteralPath $dir -Force
        } else {
            Write-Host "keep   $dir\ (not empty)"
        }
    }
    Write-Host 'uninstalled'
}

Assert-Administrator
switch ($Action) {
    'Install' { Install-Outpost }
    'Uninstall' { Uninstall-Outpost }
}
