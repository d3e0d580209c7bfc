//! `launcher export --influx URL [--db NAME]`: the run's `analysis/metrics.lp` (the
//! analysis crate's line-protocol renderer, written again from the reports) sent to an
//! InfluxDB 1.x server: `CREATE DATABASE` (which does nothing when it exists), then one
//! `POST /write?db=NAME&precision=ms`. A server that cannot be reached or refuses the
//! points is a failure (exit 1); a URL that is not one is bad input (exit 2).

use crate::results::analyze;
use crate::run::dir::RunDir;
use cmesh_analysis::render::influx::LineProtocol;
use std::time::Duration;

/// What was sent.
#[derive(Debug, serde::Serialize)]
pub struct Exported {
    pub file: std::path::PathBuf,
    pub points: usize,
    pub db: String,
}

/// The URL for messages: without a user or password.
fn shown(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Writes `analysis/metrics.lp` for `run` and sends it to the server at `url`, database
/// `db`.
pub async fn influx(run: &RunDir, url: &str, db: &str) -> anyhow::Result<Exported> {
    let base = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            cmesh_common::exit::bad_input(format!(
                "--influx `{url}` is not an http(s) URL, e.g. http://localhost:8086"
            ))
        })?;
    if db.is_empty()
        || db.len() > 64
        || !db
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(cmesh_common::exit::bad_input(format!(
            "--db `{db}` is not a database name: 1 to 64 of A-Z a-z 0-9 _ -"
        )));
    }
    let file = analyze::render_one(run, &LineProtocol)?;
    let body = std::fs::read(&file)?;
    let points = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let at = |path: &str| {
        base.join(path)
            .map_err(|e| cmesh_common::exit::bad_input(format!("--influx `{url}`: {e}")))
    };
    let server = shown(&base);
    let create = client
        .post(at("query")?)
        .form(&[("q", format!("CREATE DATABASE \"{db}\""))])
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("InfluxDB at {server} did not answer: {e}; is it running?"))?;
    if !create.status().is_success() {
        let status = create.status();
        let text = create.text().await.unwrap_or_default();
        anyhow::bail!("InfluxDB at {server} refused CREATE DATABASE {db}: {status} {text}");
    }
    let mut write = at("write")?;
    write
        .query_pairs_mut()
        .append_pair("db", db)
        .append_pair("precision", "ms");
    let sent = client
        .post(write)
        .body(body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("InfluxDB at {server} did not answer: {e}"))?;
    if !sent.status().is_success() {
        let status = sent.status();
        let text = sent.text().await.unwrap_or_default();
        anyhow::bail!(
            "InfluxDB at {server} refused the points of {}: {status} {text}",
            file.display()
        );
    }
    Ok(Exported {
        file,
        points,
        db: db.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        let u = reqwest::Url::parse("http://me:secret@influx.lab:8086/").unwrap();
        assert_eq!(shown(&u), "http://influx.lab:8086/");
    }
}
