import ArgumentParser
import Dispatch
import Foundation
import ICHConsole
import ICHDaemon
import Logging

/// `ichd run --config FILE [--until-idle SECONDS]`: the appliance daemon (docs/daemon.md).
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "The appliance: watch the drop folder, score every slice, decide per series, alert on the lamp and serial line.",
        discussion: """
            Exit status 0 after SIGTERM/SIGINT (or --until-idle), 2 when the configuration is refused (the key, \
            its value and the reason are printed). SIGHUP reloads the configuration and the model; a bad new \
            model is refused and the old one keeps running. The shipped model is trained on synthetic phantoms: \
            no clinical claim.
            """)

    @Option(help: "Configuration file (TOML; board/*/ichd.toml).")
    var config: String

    @Option(name: .customLong("until-idle"), help: "Exit 0 once every series is final and nothing has arrived for this many seconds.")
    var untilIdle: Double?

    func run() throws {
        bootstrapLogging()
        let logger = Logger(label: "ichd")
        let settings: DaemonConfig
        let daemon: Daemon
        let consoleMetrics = ConsoleMetrics()
        var console: ConsoleServer?
        do {
            settings = try DaemonConfig.load(path: config)
            daemon = try Daemon(config: settings, logger: logger, untilIdle: untilIdle, metrics: consoleMetrics.appliance)
            if settings.console.enabled {
                console = try ConsoleServer(settings: settings.console, backend: DaemonConsoleBackend(daemon: daemon, stateFolder: settings.stateFolder),
                                            metrics: consoleMetrics, logger: logger)
            }
        } catch {
            printError("ichd run: \(error.description)")
            throw ExitCode(2)
        }
        let signals = SignalHandlers(daemon: daemon)
        // The console is an accessory: one that cannot listen is logged, and the lamp and serial line go on.
        let runner = console.map { ConsoleRunner.start($0, logger: logger) }
        let status = daemon.run()
        runner?.stop()
        withExtendedLifetime(signals) {}
        throw ExitCode(status)
    }
}

/// SIGTERM/SIGINT stop the daemon gracefully, SIGHUP reloads; handled on one queue, never in a signal context.
final class SignalHandlers: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]

    init(daemon: Daemon) {
        let queue = DispatchQueue(label: "ichd.signals")
        var sources: [any DispatchSourceSignal] = []
        for (number, reload) in [(SIGTERM, false), (SIGINT, false), (SIGHUP, true)] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { reload ? daemon.requestReload() : daemon.requestStop() }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }
}

/// Structured logs on stdout for journald: one line per event, `key=value` metadata, no patient-identifying
/// value (the daemon never puts one in a message or in metadata).
func bootstrapLogging() {
    let level = ProcessInfo.processInfo.environment["ICHD_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardOutput(label: label)
        handler.logLevel = level
        return handler
    }
}

/// `ichd receive --config FILE`: DCMTK's storescp into the drop folder, with the AE title and port of the
/// `[receiver]` table (the ichd-storescp unit runs this, so the drop folder is configured in one place).
struct ReceiveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "receive",
        abstract: "Run DCMTK's storescp into the configured drop folder ([receiver] ae_title, port).")

    @Option(help: "Configuration file (TOML).")
    var config: String

    @Option(help: "storescp executable.")
    var storescp = "storescp"

    @Flag(help: "Print the storescp command line instead of running it.")
    var dryRun = false

    func run() throws {
        let settings: DaemonConfig
        do {
            settings = try DaemonConfig.load(path: config)
        } catch {
            printError("ichd receive: \(error.description)")
            throw ExitCode(2)
        }
        // One object per file at its final name, written straight into the watched folder (the daemon acts on
        // close-after-write); --fork is not used so that systemd supervises one process.
        // +xa: accept every transfer syntax DCMTK supports (scanners and PACS send JPEG lossless, JPEG-LS, RLE;
        // storescp's default accepts uncompressed only and the association would fail). Files stay as sent;
        // ingest decodes them.
        let arguments = [storescp, "+xa", "--aetitle", settings.aeTitle, "--output-directory", settings.dropFolder, "\(settings.receiverPort)"]
        if dryRun {
            print(arguments.joined(separator: " "))
            return
        }
        let cArguments = arguments.map { strdup($0) } + [nil]
        execvp(storescp, cArguments)
        printError("ichd receive: cannot run \(storescp): \(String(cString: strerror(errno)))")
        throw ExitCode(1)
    }
}
