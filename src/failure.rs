//! Whose fault a failed command is, which decides the process's exit code.
//! Each error type that can end a command says it by implementing
//! [`Failure`]; `cli::exit_code` asks the error it is given.

/// What a failure is due to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The input or the usage: a setting, a file, an argument (exit code 2).
    Input,
    /// Anything else: the database, the disk, the network (exit code 1).
    Runtime,
    /// Worth trying again later: a mail server keeps the message it piped
    /// to `feedback ingest`; a `campaign run` held back for stale data plans
    /// once fresh data has arrived (exit code 75, sysexits' `EX_TEMPFAIL`).
    TryAgainLater,
}

impl Fault {
    pub fn exit_code(self) -> u8 {
        match self {
            Fault::Input => 2,
            Fault::Runtime => 1,
            Fault::TryAgainLater => 75,
        }
    }

    /// [`Fault::Input`] when `input` is true, [`Fault::Runtime`] otherwise.
    pub fn input_if(input: bool) -> Fault {
        if input { Fault::Input } else { Fault::Runtime }
    }
}

/// An error that can end a command.
pub trait Failure: std::error::Error + Send + Sync + 'static {
    fn fault(&self) -> Fault;
}
