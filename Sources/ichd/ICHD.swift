import ArgumentParser
import Foundation

/// `ichd`: the appliance's single executable. Exit codes: 0 ok, 1 input rejected, 2 usage error.
@main
struct ICHD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ichd",
        abstract: "Intracranial-hemorrhage alert appliance (synthetic-phantom model; not for clinical use).",
        subcommands: [InspectCommand.self, PreprocessCommand.self, InferCommand.self, ConvertCommand.self, PhantomCommand.self, BenchCommand.self])

    static func main() {
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

/// Writes through a temporary file and a rename, so a reader never sees half a file.
func writeAtomically(_ bytes: [UInt8], to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let temp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
    do {
        try Data(bytes).write(to: temp)
        if FileManager.default.fileExists(atPath: url.path) {
            _ = try FileManager.default.replaceItemAt(url, withItemAt: temp)
        } else {
            try FileManager.default.moveItem(at: temp, to: url)
        }
    } catch {
        try? FileManager.default.removeItem(at: temp)
        throw ValidationError("cannot write \(path): \(error.localizedDescription)")
    }
}
