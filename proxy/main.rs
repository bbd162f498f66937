fn main() -> std::process::ExitCode {
    ddlgate::app::main()
}
