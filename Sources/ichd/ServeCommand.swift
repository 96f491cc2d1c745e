import ArgumentParser
import Dispatch
import Foundation
import ICHConsole
import ICHDaemon
import ICHEngine
import Logging

/// `ichd serve --model M`: the web console alone, for evaluation: upload slices, see the scores, heatmaps and
/// the series decision. No drop folder, lamp, serial line or journal (docs/console.md).
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "The web console alone: upload DICOM or JPEG slices and see the model's answer (no watcher, no alerts).",
        discussion: """
            Binds to 127.0.0.1 by default. Any other address needs --token-file (a file holding the access token, \
            mode 600, at least 16 characters); every request then needs `Authorization: Bearer TOKEN` or the login \
            form's cookie. Exit status 2 when a setting is refused. The shipped model is trained on synthetic \
            phantoms: no clinical claim.
            """)

    @Option(help: "Model (.ichm int8, or .safetensors float32 reference).")
    var model: String

    @Option(help: "Address to listen on.")
    var bind = "127.0.0.1"

    @Option(help: "Port (0: any free port, printed at start).")
    var port = 8080

    @Option(name: .customLong("token-file"), help: "File holding the access token (required off loopback).")
    var tokenFile: String?

    @Option(name: .customLong("max-upload-mb"), help: "Largest upload accepted (413 beyond).")
    var maxUploadMB = 64

    @Flag(name: .customLong("show-identifiers"), help: "Show the files' identifying values (UIDs, accession number).")
    var showIdentifiers = false

    @Option(name: .customLong("adjacent-slices"), help: "The series rule: adjacent slices at or above the threshold that make a series urgent.")
    var adjacentSlices = 2

    @Option(help: "Worker threads of the engine.")
    var threads = 1

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
        guard (1...4096).contains(maxUploadMB) else { throw ValidationError("--max-upload-mb must be 1...4096") }
        guard (1...64).contains(adjacentSlices) else { throw ValidationError("--adjacent-slices must be 1...64") }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be 1...64") }
    }

    func run() throws {
        bootstrapLogging()
        let logger = Logger(label: "ichd")
        let scorer: SliceScorer
        do {
            scorer = try SliceScorer(path: model, threads: threads)
        } catch {
            printError("ichd serve: --model \(model): \(error.description)")
            throw ExitCode(2)
        }
        let settings = ConsoleSettings(enabled: true, bind: bind, port: port, tokenFile: tokenFile, maxUploadMB: maxUploadMB,
                                       showIdentifiers: showIdentifiers)
        let metrics = ConsoleMetrics()
        let uploads = NSTemporaryDirectory() + "/ichd-serve-\(getpid())"
        let backend = StandaloneConsoleBackend(scorer: scorer, modelID: Daemon.modelID(path: model), modelSHA: Daemon.modelSHA(path: model),
                                               adjacentSlices: adjacentSlices, uploadParent: uploads, metrics: metrics.appliance)
        let server: ConsoleServer
        do {
            server = try ConsoleServer(settings: settings, backend: backend, metrics: metrics, logger: logger)
        } catch {
            printError("ichd serve: --\(error.key.replacingOccurrences(of: "_", with: "-")) \(error.value): \(error.reason)")
            throw ExitCode(2)
        }
        let outcome = ConsoleRunner.start(server, logger: logger)
        let stop = DispatchSemaphore(value: 0)
        let signals = [SIGTERM, SIGINT].map { number -> any DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { stop.signal() }
            source.resume()
            return source
        }
        outcome.onExit { stop.signal() }
        stop.wait()
        outcome.stop()
        try? FileManager.default.removeItem(atPath: uploads)
        withExtendedLifetime(signals) {}
        if let error = outcome.failure {
            printError("ichd serve: \(error)")
            throw ExitCode(1)
        }
    }
}

/// The console's server on Swift concurrency's threads beside a blocking main thread (the daemon's loop or
/// `ichd serve`'s wait). Logs the address once listening; a server that cannot start is logged and reported.
final class ConsoleRunner: @unchecked Sendable {
    private var task: Task<Void, Never>?
    private let lock = NSLock()
    private var _failure: String?
    private var exitHandlers: [@Sendable () -> Void] = []
    private let finished = DispatchSemaphore(value: 0)

    var failure: String? { lock.withLock { _failure } }

    static func start(_ server: ConsoleServer, logger: Logger) -> ConsoleRunner {
        let runner = ConsoleRunner()
        let bind = server.settings.bind
        runner.task = Task {
            do {
                try await server.run { port in
                    logger.notice("console listening", metadata: ["url": "http://\(bind.contains(":") ? "[\(bind)]" : bind):\(port)/",
                                                                 "token": "\(server.settings.tokenFile == nil ? "none" : "required")"])
                }
            } catch {
                logger.error("console stopped", metadata: ["error": "\(error)"])
                runner.lock.withLock { runner._failure = "\(error)" }
            }
            runner.finished.signal()
            for handler in runner.lock.withLock({ runner.exitHandlers }) { handler() }
        }
        return runner
    }

    func onExit(_ handler: @escaping @Sendable () -> Void) { lock.withLock { exitHandlers.append(handler) } }

    /// Stops the server and waits (at most 5 s) for it to close.
    func stop() {
        task?.cancel()
        _ = finished.wait(timeout: .now() + 5)
    }
}
