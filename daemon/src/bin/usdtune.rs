fn main() -> std::process::ExitCode {
    usdtune::cli::main_with(std::env::args())
}
