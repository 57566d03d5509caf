//! The `clerkgate` binary: everything lives in the library; this only hands over the CLI.

fn main() -> std::process::ExitCode {
    clerkgate::cli::main()
}
