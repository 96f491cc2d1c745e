import Foundation

/// What a run of the built `ichd` printed and how it exited.
struct ICHDRun: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// The `ichd` built next to this test bundle.
let ichdBinary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("ichd")

/// Runs `ichd` with `arguments`, the way a user does, and waits for it.
func runICHD(_ arguments: [String]) throws -> ICHDRun {
    let process = Process()
    process.executableURL = ichdBinary
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ICHDRun(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                   stderr: String(decoding: stderr, as: UTF8.self))
}
