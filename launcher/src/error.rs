//! Errors and exit codes.
//!
//! Any error is a failed command (exit 1) unless it is wrapped in [`BadInput`] (exit 2):
//! input that was refused before anything was created.

use cmesh_common::exit;

/// Input refused before anything changed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// A bad-input error with this message.
pub fn bad_input(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(BadInput(message.into()))
}

/// The exit code for an error: 2 for bad input, 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    if error
        .chain()
        .any(|e| e.downcast_ref::<BadInput>().is_some())
    {
        exit::BAD_INPUT
    } else {
        exit::RUN_FAILED
    }
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
        assert_eq!(exit_code(&e), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("boom")), 1);
    }
}
