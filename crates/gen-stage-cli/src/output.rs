//! Lines on standard output that end the command quietly once nobody reads them.

use std::fmt::Display;
use std::io::{ErrorKind, Write};

/// Prints `text` and a newline on standard output.
///
/// When the reader has gone (`gen-stage demo | head`), the command exits at once with
/// success, as tools that print for a pipe do, instead of panicking as `println!` does.
/// Any other failure to write is reported and the command fails.
pub(crate) fn print_line(text: impl Display) {
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(error) => {
            eprintln!("error: cannot write to standard output: {error}");
            std::process::exit(1);
        }
    }
}
