fn main() -> std::process::ExitCode {
    lwgate::cli::main()
}
