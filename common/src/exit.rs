//! Errors and exit codes, one convention for every cmesh program (the launcher, the
//! coordinator, the peer).
//!
//! | code | meaning |
//! |---|---|
//! | 0 | the command did what was asked |
//! | 1 | the run (or the command's work) failed: a peer failed, the coordinator was unreachable, a host was lost, ... |
//! | 2 | bad input: a flag, file or address was wrong; nothing was changed |
//!
//! A program's work returns `anyhow::Result<i32>`. Any error is a failure (1) unless it
//! is (or wraps, at any depth of context) a [`BadInput`], made with [`bad_input`]: input
//! refused before anything was created. Each `main` ends with [`finish`], which says the
//! error on stderr as `PROGRAM: error: …` and exits with its code.

use std::process::ExitCode;

/// The command did what was asked.
pub const OK: i32 = 0;
/// The run, or the command's work, failed.
pub const RUN_FAILED: i32 = 1;
/// Bad input: the command refused before changing anything.
pub const BAD_INPUT: i32 = 2;

/// Input refused before anything changed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// A bad-input error with this message.
pub fn bad_input(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(message.into()))
}

/// The exit code for an error: [`BAD_INPUT`] for bad input, [`RUN_FAILED`] otherwise.
pub fn code(error: &anyhow::Error) -> i32 {
    if error
        .chain()
        .any(|e| e.downcast_ref::<BadInput>().is_some())
    {
        BAD_INPUT
    } else {
        RUN_FAILED
    }
}

/// The end of `program`'s `main`: the code its work returned, or its error said on
/// stderr (`program: error: …`, with every context) and the error's code.
pub fn finish(program: &str, result: anyhow::Result<i32>) -> ExitCode {
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{program}: error: {e:#}");
            code(&e)
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(RUN_FAILED as u8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn bad_input_is_2_even_with_context() {
        let e: anyhow::Error = Err::<(), _>(bad_input("nope"))
            .context("while reading")
            .unwrap_err();
        assert_eq!(code(&e), BAD_INPUT);
        assert_eq!(code(&anyhow::anyhow!("boom")), RUN_FAILED);
    }
}
