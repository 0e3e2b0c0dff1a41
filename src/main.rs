fn main() {
    std::process::exit(pillarq::cli::main());
}
