//! A page opened in a real headless browser (Debian's `chromium`, which
//! scripts/prerequisites installs): what it logged to its console, its screenshot, and
//! what a probe script the test supplies read off the laid-out page.
//!
//! The page itself is opened as it is, for the console and the screenshot. The probe
//! runs in a copy of it beside the screenshot, with the script added before `</body>`:
//! it stores its findings as JSON in `document.body.dataset.probe`, which the browser's
//! `--dump-dom` prints after the page's scripts have run. Both runs go through a proxy
//! that does not exist, so a page that reaches for the network logs an error.

use crate::wait_child;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What the browser saw.
#[derive(Debug)]
pub struct Opened {
    /// Every console message and uncaught error, as chromium logged them.
    pub console: Vec<String>,
    /// What the probe script stored.
    pub probe: serde_json::Value,
    /// The page's screenshot.
    pub screenshot: PathBuf,
}

/// The browser to run: `$CMESH_CHROMIUM`, else `chromium`.
fn chromium() -> String {
    std::env::var("CMESH_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Runs chromium headless on `url` with `args`; returns its stdout and the console
/// lines of its log.
fn run(out_dir: &Path, tag: &str, url: &str, args: &[&str]) -> Result<(String, Vec<String>)> {
    let stdout = out_dir.join(format!("{tag}.out"));
    let stderr = out_dir.join(format!("{tag}.log"));
    let profile = tempfile::tempdir()?;
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            "--proxy-server=127.0.0.1:9",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout)?)
        .stderr(std::fs::File::create(&stderr)?)
        .spawn()
        .with_context(|| {
            format!(
                "cannot run `{}`: install chromium (scripts/prerequisites does)",
                chromium()
            )
        })?;
    let status = wait_child(&mut child, Duration::from_secs(120))?;
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    if !status.success() {
        bail!("chromium {tag} exited {status}: {log}");
    }
    let console = log
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    Ok((std::fs::read_to_string(&stdout)?, console))
}

/// Opens `page` (an HTML file) in headless chromium: a screenshot `screenshot.png` in
/// `out_dir`, its console, and `probe_js` run in a copy of it.
pub fn open(page: &Path, out_dir: &Path, probe_js: &str) -> Result<Opened> {
    std::fs::create_dir_all(out_dir)?;
    let page = page.canonicalize()?;
    let screenshot = out_dir.join("screenshot.png");
    let (_, console) = run(
        out_dir,
        "screenshot",
        &format!("file://{}", page.display()),
        &[
            "--window-size=1000,3000",
            &format!("--screenshot={}", screenshot.display()),
        ],
    )?;
    let html = std::fs::read_to_string(&page)?;
    let Some(end) = html.rfind("</body>") else {
        bail!("{} has no </body>", page.display());
    };
    let probe_page = out_dir.join("probe.html");
    std::fs::write(
        &probe_page,
        format!(
            "{}<script>{probe_js}</script>{}",
            &html[..end],
            &html[end..]
        ),
    )?;
    let (dom, _) = run(
        out_dir,
        "probe",
        &format!("file://{}", probe_page.canonicalize()?.display()),
        &["--dump-dom"],
    )?;
    let Some(at) = dom.find("data-probe=\"") else {
        bail!("the probe stored nothing; the page's DOM: {dom:.2000}");
    };
    let rest = &dom[at + "data-probe=\"".len()..];
    let raw = &rest[..rest.find('"').context("unterminated data-probe")?];
    let json = raw
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    Ok(Opened {
        console,
        probe: serde_json::from_str(&json).with_context(|| format!("probe: {json}"))?,
        screenshot,
    })
}
