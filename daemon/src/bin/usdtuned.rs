//! usdtuned: the long-running daemon. Same as `usdtune daemon`.
fn main() -> std::process::ExitCode {
    usdtune::cli::main_with(
        std::iter::once("usdtune".to_string()).chain(std::iter::once("daemon".into())).chain(std::env::args().skip(1)),
    )
}
