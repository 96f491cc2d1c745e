import ArgumentParser
import Foundation
import ICHIngest
#if canImport(CMalloc)
import CMalloc
#endif

/// `ichd`: the appliance's single executable. Exit codes: 0 ok, 1 input rejected, 2 usage error.
@main
struct ICHD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ichd",
        abstract: "Intracranial-hemorrhage alert appliance (synthetic-phantom model; not for clinical use).",
        subcommands: [InspectCommand.self, PreprocessCommand.self, InferCommand.self, ConvertCommand.self, EvalCommand.self, PhantomCommand.self, SelfTestCommand.self, BenchCommand.self, RunCommand.self, ReceiveCommand.self, ListenCommand.self, ServeCommand.self])

    static func main() {
        #if canImport(CMalloc)
        // Buffers of 128 KiB and more straight from mmap, and back to the kernel when freed. glibc otherwise
        // raises that threshold after the first large free (the model's int8 weights are released at load, a
        // slice's decode buffers after preprocessing) and serves later large buffers from a heap that keeps
        // freed memory resident. The engine allocates nothing large per inference, so this costs no speed.
        // Measured: `ichd bench` peak RSS about 0.5 MB lower (bench/README.md).
        _ = mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        #endif
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            // ArgumentParser reports usage errors as 64 (EX_USAGE); ichd's contract says 2.
            if exitCode(for: error) == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// Exit status for "the input was rejected" (reason already on stderr).
let rejectedExit = ExitCode(1)

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Atomic write (see AtomicFile), with the error as a usage-level failure of the command.
func writeAtomically(_ bytes: [UInt8], to path: String) throws {
    do {
        try AtomicFile.write(Data(bytes), to: path)
    } catch {
        printError(error.description)
        throw rejectedExit
    }
}
