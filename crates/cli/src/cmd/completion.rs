//! `spillway completion SHELL`: print a completion script for bash, zsh or fish.

use std::process::ExitCode;

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

use crate::Cli;

/// Where to put each shell's script, shown under `spillway completion --help`.
pub const AFTER_HELP: &str = "Where to put the script:
  bash: spillway completion bash > ~/.local/share/bash-completion/completions/spillway
  zsh:  spillway completion zsh > ~/.zfunc/_spillway
        (with `fpath+=~/.zfunc; autoload -Uz compinit; compinit` in ~/.zshrc)
  fish: spillway completion fish > ~/.config/fish/completions/spillway.fish
Open a new shell afterwards.

Example:
  spillway completion bash > ~/.local/share/bash-completion/completions/spillway";

/// The shells a script can be printed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// GNU Bash.
    Bash,
    /// Z shell.
    Zsh,
    /// The friendly interactive shell.
    Fish,
}

/// Options of `spillway completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to print the script for.
    #[arg(value_enum)]
    shell: CompletionShell,
}

/// Print the completion script on stdout.
pub fn run(args: &CompletionArgs) -> ExitCode {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "spillway", &mut std::io::stdout());
    ExitCode::SUCCESS
}
