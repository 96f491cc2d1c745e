import Crypto
import Foundation
import ICHAlerts
import ICHDecision
import ICHEngine
import ICHIngest
import ICHPreprocessing
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// `ichd run`: the appliance. Data flows one way through four threads:
///
///     watcher ──> IntakeQueue ──> decoder ──> [bounded] ──> scorer ──> finisher ──> alerts
///     (inotify)   (round-robin    (DCMTK, HU,   2 slices     (SliceScorer)  (series rule, journal,
///                  per series)     windows)                                  moves, RESULT, health)
///
/// Decoding and preprocessing overlap inference; the bounded queue between them keeps memory flat however
/// large the backlog on disk. The finisher owns the series and the journal writes, and runs the daemon's
/// housekeeping (quiet series, health, watchdog) between files. The journal (Journal) makes every step
/// exactly-once across `kill -9`.
public final class Daemon: @unchecked Sendable {
    public static let firmwareVersion = "0.9.0"

    let config: DaemonConfig
    let logger: Logger
    let untilIdle: TimeInterval?
    let journal: Journal
    let mover: FileMover
    let intake = IntakeQueue()
    let scoreQueue: BoundedQueue<ScoreItem>
    let finishQueue = BoundedQueue<FinishItem>(capacity: Int.max)
    let notifier = SystemdNotifier()
    public let alerts: AlertCenter
    public let bootID: String
    public let modelSHA: String
    public let modelID: String
    public let metrics: ApplianceMetrics
    private var watcher: DropFolderWatcher!

    /// Read by the scorer, replaced by a reload between two slices.
    private let scorerLock = NSLock()
    /// One engine per scorer thread (`model.scorers`); the first also serves the decoder (preprocessing spec).
    private var currentScorers: [SliceScorer]
    private var currentScorer: SliceScorer { currentScorers[0] }
    private var currentConfig: DaemonConfig

    // State shared between threads (under `stateLock`).
    private let stateLock = NSLock()
    private var lastArrival: [String: Date] = [:]       // series -> last file reported for it
    private var lastAnyArrival = Date()
    private var inFlightSOPs: Set<String> = []
    private var faults: [FaultCode: String] = [:]
    private var latency: LatencyTracker
    private var scorerAliveAt = Date()
    private var decoderBusySince: Date?
    private var stopRequested = false
    private var reloadRequested = false
    private var recentResults: [SeriesResultRecord] = []   // newest last, at most `recentResultsKept`
    private var uploadCounter = 0
    private var currentModel: (id: String, sha: String)

    // Finisher-only state.
    private var series: [String: SeriesState] = [:]
    private var retries: [(Arrival, String, Date)] = []
    private var lastWatchdog = Date.distantPast
    private var lastRetention = Date.distantPast

    struct SeriesState {
        var study: String
        var evidence: SeriesEvidence
        var rejected: Int
        var alertID: String?
        var lastDone: Date
    }

    /// Loads the model and opens the journal; a model that cannot be loaded is a configuration error.
    public init(config: DaemonConfig, logger: Logger, untilIdle: TimeInterval? = nil, chip: (any GPIOChip)? = nil,
                metrics: ApplianceMetrics = ApplianceMetrics()) throws(ConfigError) {
        self.config = config
        self.metrics = metrics
        currentConfig = config
        self.logger = logger
        self.untilIdle = untilIdle
        // One prepared slice ahead of each scorer: enough to keep them fed, little memory (0.8 MB a slice).
        scoreQueue = BoundedQueue<ScoreItem>(capacity: config.scorers + 1)
        do {
            currentScorers = try (0..<config.scorers).map { _ in try SliceScorer(path: config.modelPath, threads: config.threads) }
        } catch {
            throw ConfigError(key: "model.path", value: "\"\(config.modelPath)\"", reason: "cannot load the model: \(error)")
        }
        modelSHA = Self.modelSHA(path: config.modelPath)
        modelID = Self.modelID(path: config.modelPath)
        currentModel = (modelID, modelSHA)
        do {
            journal = try Journal(folder: config.stateFolder)
        } catch {
            throw ConfigError(key: "folders.state", value: "\"\(config.stateFolder)\"", reason: "cannot open the journal: \(error)")
        }
        mover = FileMover(archiveFolder: config.archiveFolder, quarantineFolder: config.quarantineFolder)
        latency = LatencyTracker(budgetMs: config.sliceBudgetMs)
        bootID = String((0..<8).map { _ in "0123456789abcdef".randomElement()! })
        let identity = ApplianceIdentity(firmware: Self.firmwareVersion, modelID: modelID, modelSHA: modelSHA, board: config.board, bootID: bootID)
        // The alert layer asks for the pipeline's state on every heartbeat; acknowledgements from every path
        // (button, serial, console) land in the journal through this one closure.
        let box = WeakDaemon()
        let journal = self.journal, log = logger, counters = metrics
        alerts = AlertCenter(identity: identity, serial: config.serial, lamp: config.lamp, chip: chip, logger: logger,
                             status: { box.daemon?.pipelineStatus() ?? PipelineStatus(state: .ok, queue: 0, p99Ms: nil) },
                             onAcknowledge: { id, by in
                                 do {
                                     if try journal.acknowledge(id, by: by.rawValue) { counters.alertAcknowledged(by: by.rawValue) }
                                     log.info("alert acknowledged", metadata: ["alert": "\(id)", "by": "\(by.rawValue)"])
                                 } catch {
                                     log.error("could not record an acknowledgement", metadata: ["alert": "\(id)", "error": "\(error)"])
                                 }
                             })
        box.daemon = self
    }

    final class WeakDaemon: @unchecked Sendable { weak var daemon: Daemon? }

    /// The model's name as the protocol and console show it (its file's stem, protocol-safe).
    public static func modelID(path: String) -> String {
        let stem = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        let safe = String(stem.map { DaemonConfig.isProtocolSafe($0) ? $0 : "_" })
        return safe.isEmpty ? "model" : safe
    }

    /// The first 12 hex digits of the model file's SHA-256 (HELLO `model_sha`, the console).
    public static func modelSHA(path: String) -> String { fileSHA256(path).map { String($0.prefix(12)) } ?? "unknown" }

    static func fileSHA256(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { hex(SHA256.hash(data: $0)) }
    }

    static func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    /// The alert id of a series: stable (a restart, a second daemon on the same journal, a resend all give the
    /// same id) and unique per series.
    public static func alertID(series: String) -> String {
        "A" + hex(SHA256.hash(data: Data(series.utf8)).prefix(6))
    }

    // MARK: - Control

    public func requestStop() { stateLock.withLock { stopRequested = true } }
    public func requestReload() { stateLock.withLock { reloadRequested = true } }

    public func pipelineStatus() -> PipelineStatus {
        stateLock.withLock {
            let state: HealthState = faults.keys.contains(where: { $0 != .budget }) ? .fault : (latency.degraded ? .degraded : .ok)
            let p = latency.percentiles([50, 95, 99]).map { $0.map { Int($0.rounded()) } }
            return PipelineStatus(state: state, queue: intake.count, p99Ms: p[2], p50Ms: p[0], p95Ms: p[1], overBudget: latency.overBudget)
        }
    }

    public struct Status: Sendable {
        /// Queue, latency percentiles and the over-budget count are the pipeline's.
        public var pipeline: PipelineStatus
        public var health: HealthState
        public var slices: Int
        public var faults: [String: String]
    }

    /// A finished series as the console lists it.
    public struct SeriesResultRecord: Sendable {
        public var result: SeriesResultNotice
        public var finishedAt: Date
    }

    static let recentResultsKept = 20

    /// The last finished series, newest first.
    public var recentSeriesResults: [SeriesResultRecord] { stateLock.withLock { recentResults.reversed() } }

    /// The budget, series rule and model the daemon runs with now (a reload may change them).
    public struct Settings: Sendable {
        public var sliceBudgetMs: Int
        public var adjacentSlices: Int
        public var modelID: String
        public var modelSHA: String
        public var engine: String
        public var classNames: [String]
        public var thresholds: [Float]
    }

    public var currentSettings: Settings {
        let (c, model) = stateLock.withLock { (currentConfig, currentModel) }
        let s = scorerLock.withLock { currentScorer }
        return Settings(sliceBudgetMs: c.sliceBudgetMs, adjacentSlices: c.adjacentSlices, modelID: model.id, modelSHA: model.sha,
                        engine: s.engineName, classNames: s.classNames, thresholds: s.thresholds)
    }

    public func status() -> Status {
        let pipeline = pipelineStatus()
        let alertLayer: HealthState = alerts.activeFaults.isEmpty ? .ok : .fault  // never under stateLock: the alert layer calls in
        return stateLock.withLock {
            Status(pipeline: pipeline, health: max(pipeline.state, alertLayer), slices: latency.count,
                   faults: Dictionary(uniqueKeysWithValues: faults.map { ($0.key.rawValue, $0.value) }))
        }
    }

    /// Sets or clears a daemon-side fault; a new fault is announced once (FAULT line, log).
    func setFault(_ code: FaultCode, _ message: String?) {
        let changed: Bool = stateLock.withLock {
            if let message {
                let isNew = faults[code] == nil
                faults[code] = message
                return isNew
            }
            return faults.removeValue(forKey: code) != nil
        }
        guard changed else { return }
        if let message {
            logger.error("fault", metadata: ["code": "\(code.rawValue)", "reason": "\(message)"])
            alerts.fault(code, message)
        } else {
            logger.notice("fault cleared", metadata: ["code": "\(code.rawValue)"])
        }
    }

    // MARK: - Run

    /// Runs until SIGTERM/SIGINT (or `untilIdle`); returns the exit status.
    public func run() -> Int32 {
        logger.info("starting", metadata: ["board": "\(config.board)", "model": "\(modelID)", "model_sha": "\(modelSHA)",
                                           "threads": "\(config.threads)", "scorers": "\(config.scorers)", "drop": "\(config.dropFolder)"])
        recoverFromJournal()
        let pending = (try? journal.pendingAlerts()) ?? []
        alerts.start(pending: pending.map(notice))
        if !pending.isEmpty { logger.notice("unacknowledged alerts announced again", metadata: ["count": "\(pending.count)"]) }

        watcher = DropFolderWatcher(folder: config.dropFolder, mode: config.watch, pollInterval: Double(config.pollIntervalMs) / 1000,
                                    onArrival: { [weak self] in self?.arrived($0) },
                                    onProblem: { [weak self] in self?.setFault(.dropFolder, $0) })
        watcher.start()
        logger.info("watching", metadata: ["mode": "\(watcher.mode.rawValue)"])
        startThread("ichd-decode") { [self] in decodeLoop() }
        for i in 0..<currentScorers.count { startThread("ichd-score-\(i)") { [self] in scoreLoop(i) } }
        // Ready: the model is loaded, the journal recovered, the folder watched (its start-up scan queued).
        notifier.notify("READY=1\nSTATUS=watching \(config.dropFolder)")

        finishLoop()

        notifier.notify("STOPPING=1")
        watcher.stop()
        intake.close()
        scoreQueue.close()
        // The decoder and scorer end with the slice in flight; what is left in the queues stays in the drop
        // folder for the next start.
        if threads.wait(timeout: .now() + 60) == .timedOut { logger.error("a pipeline thread did not stop within 60 s") }
        while let item = finishQueue.pop(timeout: 0) { finish(item) }
        alerts.stop()
        logger.info("stopped")
        return 0
    }

    private let threads = DispatchGroup()

    private func startThread(_ name: String, _ body: @escaping @Sendable () -> Void) {
        threads.enter()
        let group = threads
        let t = Thread {
            body()
            group.leave()
        }
        t.name = name
        t.stackSize = 8 << 20
        t.start()
    }

    // MARK: - Intake (watcher thread)

    private func arrived(_ arrival: Arrival) {
        // The series from the header (cheap: DCMTK leaves the pixel data on disk) decides the round-robin turn.
        let series = DicomIdentity.read(path: arrival.path)?.seriesInstanceUID ?? ""
        stateLock.withLock {
            lastArrival[series] = max(lastArrival[series] ?? .distantPast, Date())
            lastAnyArrival = Date()
        }
        intake.add(IntakeQueue.Item(arrival: arrival, series: series))
    }

    // MARK: - Decoder thread

    private func decodeLoop() {
        while !isStopping {
            guard let item = intake.next(timeout: 0.5) else { continue }
            stateLock.withLock { decoderBusySince = Date() }
            decode(item)
            stateLock.withLock { decoderBusySince = nil }
        }
    }

    private var isStopping: Bool { stateLock.withLock { stopRequested } }

    private func decode(_ item: IntakeQueue.Item) {
        if let ticket = item.upload { return decodeUpload(item.arrival.path, ticket) }
        let path = item.arrival.path
        guard FileManager.default.fileExists(atPath: path) else {
            // storescp deletes a failed transfer; a rescan may name a file already moved. Nothing to do.
            logger.debug("file vanished before it was read", metadata: ["file": "\(relative(path))"])
            intake.finished(path)
            return
        }
        let scorer = scorerLock.withLock { currentScorer }
        let pipeline = SlicePipeline(preprocessing: scorer.preprocessing)
        let opened: SliceFile
        let identity: FileIdentity
        do {
            opened = try SliceFile.open(path: path)
        } catch {
            let id = (try? contentIdentity(path: path))
            guard let id else {
                finishQueue.push(.vanished(item.arrival))
                return
            }
            guard admit(id, arrival: item.arrival) else { return }
            finishQueue.push(.rejected(FileWork(arrival: item.arrival, identity: id, frameCount: 0), error))
            return
        }
        do {
            identity = try fileIdentity(opened, path: path)
        } catch {
            finishQueue.push(.vanished(item.arrival))
            return
        }
        guard admit(identity, arrival: item.arrival) else { return }
        let frameCount: Int
        if case .dicom(let reader) = opened { frameCount = reader.frameCount } else { frameCount = 1 }
        let work = FileWork(arrival: item.arrival, identity: identity, frameCount: frameCount)
        var index = 0
        pipeline.process(opened, path: path) { result in
            var input: ModelInput?
            switch result.outcome {
            case .rejected(let rejection): work.setRejection(rejection)
            case .skipped: break
            case .ready(_, let prepared): input = prepared
            }
            scoreQueue.push(ScoreItem(target: .file(work), frame: result.frame ?? index, key: SeriesEvidence.key(of: result, arrival: index),
                                      instance: result.header?.instanceNumber, input: input))
            index += 1
        }
        if index < frameCount { work.setFrameCount(index) }
    }

    /// Checks the journal before any pixel is decoded: an instance already done is a duplicate (or our own
    /// unfinished move); an instance in flight from another path waits its turn. Returns true to process.
    private func admit(_ identity: FileIdentity, arrival: Arrival) -> Bool {
        let inFlight = stateLock.withLock { () -> Bool in
            if inFlightSOPs.contains(identity.key) { return true }
            inFlightSOPs.insert(identity.key)
            return false
        }
        if inFlight {
            finishQueue.push(.deferred(arrival, identity.series))
            return false
        }
        do {
            if let record = try journal.instance(identity.key) {
                finishQueue.push(.alreadyDone(arrival, identity, record))
                return false
            }
        } catch {
            stateLock.withLock { _ = inFlightSOPs.remove(identity.key) }
            finishQueue.push(.journalFailed(arrival, identity.series, "\(error)"))
            return false
        }
        return true
    }

    struct FileIdentity: Sendable {
        /// SOP Instance UID, or "sha256:<hex>" for a file without one (JPEG, not DICOM).
        var key: String
        var study: String
        var series: String
        var accession: String?
        var isJPEG: Bool
    }

    private func fileIdentity(_ file: SliceFile, path: String) throws -> FileIdentity {
        switch file {
        case .dicom(let reader):
            let h = reader.header
            return FileIdentity(key: h.sopInstanceUID.isEmpty ? try contentKey(path) : h.sopInstanceUID,
                                study: h.studyInstanceUID, series: h.seriesInstanceUID, accession: h.accessionNumber?.value, isJPEG: false)
        case .jpeg:
            // A research-format JPEG names no series: its folder stands for one.
            let folder = relative((path as NSString).deletingLastPathComponent)
            return FileIdentity(key: try contentKey(path), study: "jpeg", series: "jpeg:" + folder, accession: nil, isJPEG: true)
        }
    }

    private func contentIdentity(path: String) throws -> FileIdentity {
        if let id = DicomIdentity.read(path: path) {
            return FileIdentity(key: id.sopInstanceUID, study: id.studyInstanceUID, series: id.seriesInstanceUID, accession: nil, isJPEG: false)
        }
        return FileIdentity(key: try contentKey(path), study: "", series: "", accession: nil, isJPEG: false)
    }

    struct Vanished: Error {}

    private func contentKey(_ path: String) throws -> String {
        guard let sha = Self.fileSHA256(path) else { throw Vanished() }
        return "sha256:" + sha
    }

    func relative(_ path: String) -> String {
        path.hasPrefix(config.dropFolder + "/") ? String(path.dropFirst(config.dropFolder.count + 1)) : path
    }

    // MARK: - Console uploads

    /// Scores uploaded files (the console's) with the daemon's own engines and calls `completion` with every
    /// slice's report once all are done. The files queue in the intake as a series of their own: the
    /// round-robin policy gives them a turn beside the drop folder's series, so an upload neither starves a
    /// scan nor waits behind a whole backlog. Nothing is journalled, archived, alarmed or counted against the
    /// drop folder's latency budget; the caller owns the files and deletes them afterwards.
    public func scoreUploads(_ files: [(path: String, name: String)], heatmaps: Bool = true,
                             completion: @escaping @Sendable ([SliceReport]) -> Void) {
        let number = stateLock.withLock { () -> Int in
            uploadCounter += 1
            return uploadCounter
        }
        let counters = metrics
        let ticket = UploadTicket(names: Dictionary(files.map { ($0.path, $0.name) }, uniquingKeysWith: { a, _ in a }), heatmaps: heatmaps) { reports in
            counters.uploaded(reports)
            completion(reports)
        }
        for f in files {
            intake.add(IntakeQueue.Item(arrival: Arrival(path: f.path, closedAt: Date()), series: "console:\(number)", upload: ticket))
        }
    }

    /// An upload's file on the decoder thread: refused files and skipped slices are reported at once, the
    /// rest go to the scorers like any slice.
    private func decodeUpload(_ path: String, _ ticket: UploadTicket) {
        defer {
            intake.finished(path)
            ticket.decoded()
        }
        let scorer = scorerLock.withLock { currentScorer }
        let name = ticket.names[path] ?? "upload"
        let opened: SliceFile
        do {
            opened = try SliceFile.open(path: path)
        } catch {
            return ticket.add(.refused(file: name, error))
        }
        SlicePipeline(preprocessing: scorer.preprocessing).process(opened, path: path) { result in
            let (draft, input) = SliceReport.draft(result, file: name, arrival: ticket.nextArrival(), preprocessing: scorer.preprocessing)
            guard let input else { return ticket.add(draft) }
            ticket.expect()
            scoreQueue.push(ScoreItem(target: .upload(ticket, draft), frame: draft.frame ?? 0, key: draft.sortKey, instance: draft.instance, input: input))
        }
    }

    // MARK: - Scorer thread

    /// Scorer thread `index` with its own engine: with several, slices of a backlog are scored side by side
    /// (each engine single-threaded keeps every core busy without the workers' wake-up cost; docs/daemon.md).
    private func scoreLoop(_ index: Int) {
        while true {
            stateLock.withLock { scorerAliveAt = Date() }
            alerts.scoringLoopAlive()
            guard let item = scoreQueue.pop(timeout: 0.5) else {
                if scoreQueue.isClosed { return }
                continue
            }
            let scorer = scorerLock.withLock { currentScorers[index % currentScorers.count] }
            guard case .file(let work) = item.target else {
                if case .upload(let ticket, var report) = item.target, let input = item.input {
                    if isStopping {
                        report.outcome = .rejected(code: "stopping", message: "the appliance is stopping; ask again after it restarts")
                    } else {
                        report.outcome = .scored(scorer.score(input, heatmaps: ticket.heatmaps ? SliceReport.heatmapClasses : { _ in [] }))
                    }
                    report.milliseconds = Self.ms(ticket.startedAt, Date())
                    ticket.add(report, fromScorer: true)
                }
                continue
            }
            if isStopping { continue }  // not started: the file stays in the drop folder
            var score: SliceScore?
            let started = Date()
            if let input = item.input, !work.isRejected { score = scorer.score(input) }
            let done = work.add(FrameResult(frame: item.frame, key: item.key, instance: item.instance, score: score,
                                                 scoredAt: Date(), preparedAt: item.preparedAt, scoreStartedAt: started,
                                                 classNames: scorer.classNames, thresholds: scorer.thresholds))
            if done { finishQueue.push(.processed(work)) }
        }
    }

    // MARK: - Finisher (the calling thread)

    private func finishLoop() {
        while true {
            if let item = finishQueue.pop(timeout: 0.1) { finish(item) }
            let (stop, reload) = stateLock.withLock { () -> (Bool, Bool) in
                defer { reloadRequested = false }
                return (stopRequested, reloadRequested)
            }
            if stop { return }
            if reload { self.reload() }
            housekeeping()
        }
    }

    enum FinishItem: Sendable {
        case processed(FileWork)
        case rejected(FileWork, IngestRejection)
        case alreadyDone(Arrival, FileIdentity, Journal.InstanceRecord)
        case deferred(Arrival, String)
        case vanished(Arrival)
        case journalFailed(Arrival, String, String)
    }

    private func finish(_ item: FinishItem) {
        switch item {
        case .processed(let work):
            if let rejection = work.rejection {
                reject(work, rejection)
            } else {
                complete(work)
            }
        case .rejected(let work, let rejection):
            reject(work, rejection)
        case .alreadyDone(let arrival, let identity, let record):
            alreadyDone(arrival, identity, record)
        case .deferred(let arrival, let series):
            intake.finished(arrival.path)
            retries.append((arrival, series, Date().addingTimeInterval(1)))
        case .vanished(let arrival):
            intake.finished(arrival.path)
        case .journalFailed(let arrival, let series, let why):
            setFault(.disk, "journal: \(why)")
            intake.finished(arrival.path)
            retries.append((arrival, series, Date().addingTimeInterval(5)))
        }
    }

    /// A scored (or skipped) file: series rule, journal, alert, archive.
    private func complete(_ work: FileWork) {
        let id = work.identity
        let frames = work.results.sorted { $0.frame < $1.frame }
        guard let first = frames.first else { return }
        var state = series[id.series] ?? newSeriesState(id)
        var completing: FrameResult?
        var sliceRecords: [Journal.SliceRecord] = []
        var latencies: [Double] = []
        for f in frames {
            let ms = max(0, Self.ms(work.arrival.closedAt, f.scoredAt))
            if let score = f.score {
                if state.evidence.add(score, key: f.key, instance: f.instance) { completing = f }
                latencies.append(ms)
                sliceRecords.append(.init(frame: f.frame, sortKey: f.key, instance: f.instance, probabilities: score.probabilities, latencyMs: Int(ms.rounded()),
                                          ood: score.ood))
            } else {
                state.evidence.addSkipped(key: f.key, instance: f.instance)
                sliceRecords.append(.init(frame: f.frame, sortKey: f.key, instance: f.instance, probabilities: nil, latencyMs: nil))
            }
        }
        let anyScored = frames.contains { $0.score != nil }
        var alertRecord: Journal.AlertRecord?
        if let c = completing, state.alertID == nil {
            let maxima = ClassProbabilities(classNames: state.evidence.finding.classNames, probabilities: state.evidence.finding.maxProbabilities)
            let decidedAt = Date()
            alertRecord = Journal.AlertRecord(
                id: Self.alertID(series: id.series), seriesUID: id.series, studyUID: id.study, slice: c.instance,
                probabilities: maxima.values, latencyMs: Int(Self.ms(work.arrival.closedAt, decidedAt).rounded()),
                raisedAt: decidedAt, accession: currentConfig.serial?.sendAccession == true ? id.accession : nil)
        }
        let name = (work.arrival.path as NSString).lastPathComponent
        let destination = FileMover.freeName(mover.archiveDestination(study: id.isJPEG ? "jpeg" : id.study, series: id.series, name: name))
        let outcome = Journal.InstanceOutcome(sopUID: id.key, studyUID: id.study, seriesUID: id.series, source: relative(work.arrival.path),
                                              receivedAt: work.arrival.closedAt, outcome: anyScored ? "scored" : "skipped", reason: nil,
                                              destination: destination, slices: sliceRecords)
        let isNewAlert: Bool
        do {
            isNewAlert = try journal.commit(outcome, alert: alertRecord)
        } catch {
            // Nothing was recorded: the file stays and is tried again (scored again, for the first time).
            giveBack(work, fault: "journal: \(error)")
            return
        }
        if let a = alertRecord {
            state.alertID = a.id
            if isNewAlert {
                metrics.alertRaised()
                alerts.raise(notice(a))
                logger.notice("ALERT", metadata: ["alert": "\(a.id)", "series": "\(id.series)", "slice": "\(a.slice.map(String.init) ?? "-")",
                                                  "lat_ms": "\(a.latencyMs)"])
            }
        }
        state.lastDone = Date()
        series[id.series] = state
        for ms in latencies {
            let changed = stateLock.withLock { latency.record(ms) }
            if changed { budgetChanged() }
            metrics.slice(.scored, source: "drop", latencyMs: ms)
        }
        for _ in 0..<(frames.count - latencies.count) { metrics.slice(.skipped, source: "drop") }
        logger.info(anyScored ? "scored" : "skipped", metadata: [
            "file": "\(relative(work.arrival.path))", "series": "\(id.series)",
            "any": "\(frames.compactMap { $0.score?.probabilities.first }.map { String(format: "%.3f", $0) }.joined(separator: ","))",
            "lat_ms": "\(latencies.map { String(Int($0.rounded())) }.joined(separator: ","))",
            // Where the latency went: intake and decoding (file close to prepared), waiting for the scorer,
            // scoring; for the first frame.
            "prep_ms": "\(Int(Self.ms(work.arrival.closedAt, first.preparedAt).rounded()))",
            "wait_ms": "\(Int(Self.ms(first.preparedAt, first.scoreStartedAt).rounded()))",
            "score_ms": "\(Int(Self.ms(first.scoreStartedAt, first.scoredAt).rounded()))"])
        moveAndConfirm(work.arrival.path, to: destination, key: id.key)
    }

    static func ms(_ from: Date, _ to: Date) -> Double { to.timeIntervalSince(from) * 1000 }

    private func reject(_ work: FileWork, _ rejection: IngestRejection) {
        let id = work.identity
        let name = (work.arrival.path as NSString).lastPathComponent
        let destination = FileMover.freeName(mover.quarantineDestination(name: name))
        let reason = """
            file: \(relative(work.arrival.path))
            code: \(rejection.code)
            reason: \(rejection.message)
            at: \(ISO8601DateFormatter().string(from: Date()))

            """
        do {
            try FileMover.writeDurably(reason, to: destination + ".reason.txt")
        } catch {
            giveBack(work, fault: "quarantine: \(error.description)")
            return
        }
        let outcome = Journal.InstanceOutcome(sopUID: id.key, studyUID: id.study, seriesUID: id.series, source: relative(work.arrival.path),
                                              receivedAt: work.arrival.closedAt, outcome: "rejected", reason: rejection.description,
                                              destination: destination, slices: [])
        do {
            try journal.commit(outcome)
        } catch {
            giveBack(work, fault: "journal: \(error)")
            return
        }
        if !id.series.isEmpty {
            var state = series[id.series] ?? newSeriesState(id)
            state.rejected += 1
            state.lastDone = Date()
            series[id.series] = state
        }
        metrics.slice(.rejected, source: "drop")
        logger.warning("rejected", metadata: ["file": "\(relative(work.arrival.path))", "code": "\(rejection.code)", "reason": "\(rejection.message)"])
        moveAndConfirm(work.arrival.path, to: destination, key: id.key)
    }

    /// A series the finisher has not seen since start: its alert id (if one was raised before) from the journal.
    private func newSeriesState(_ id: FileIdentity) -> SeriesState {
        SeriesState(study: id.study,
                    evidence: SeriesEvidence(classNames: currentScorer.classNames, thresholds: currentScorer.thresholds,
                                             adjacentSlices: currentConfig.adjacentSlices),
                    rejected: 0, alertID: (try? journal.alertID(series: id.series)) ?? nil, lastDone: Date())
    }

    /// An instance the journal already knows: finish our own interrupted move, or archive a duplicate copy.
    private func alreadyDone(_ arrival: Arrival, _ identity: FileIdentity, _ record: Journal.InstanceRecord) {
        let path = arrival.path
        if !record.moved, relative(path) == record.source, !FileManager.default.fileExists(atPath: record.destination) {
            logger.info("finishing an interrupted move", metadata: ["file": "\(record.source)"])
            moveAndConfirm(path, to: record.destination, key: identity.key)
            return
        }
        if !record.moved, FileManager.default.fileExists(atPath: record.destination) {
            try? journal.confirmMove(identity.key)
        }
        let name = (path as NSString).lastPathComponent + ".duplicate"
        let destination = FileMover.freeName(record.outcome == "rejected"
            ? mover.quarantineDestination(name: name)
            : mover.archiveDestination(study: identity.isJPEG ? "jpeg" : identity.study, series: identity.series, name: name))
        do {
            let dupID = try journal.recordDuplicate(identity.key, destination: destination)
            if record.outcome == "rejected" {
                try? FileMover.writeDurably("file: \(relative(path))\ncode: duplicate\nreason: a second copy of an instance already refused\n",
                                            to: destination + ".reason.txt")
            }
            try FileMover.move(path, to: destination)
            try journal.confirmDuplicateMove(dupID)
            logger.notice("duplicate instance archived, not scored again", metadata: ["file": "\(relative(path))", "series": "\(identity.series)"])
            setFault(.disk, nil)
        } catch {
            setFault(.disk, "duplicate: \(error)")
            retries.append((arrival, identity.series, Date().addingTimeInterval(5)))
        }
        release(identity.key)
        intake.finished(path)
    }

    private func moveAndConfirm(_ source: String, to destination: String, key: String) {
        do {
            try FileMover.move(source, to: destination)
            try journal.confirmMove(key)
            setFault(.disk, nil)
        } catch {
            // Recorded but not moved: a later attempt (the rescan, or the start-up recovery) finishes it.
            setFault(.disk, "move: \(error)")
            retries.append((Arrival(path: source, closedAt: Date()), "", Date().addingTimeInterval(5)))
        }
        release(key)
        intake.finished(source)
    }

    /// A DISK fault stopped `work` before anything was recorded: the file stays in the drop folder and is
    /// tried again in 5 s.
    private func giveBack(_ work: FileWork, fault: String) {
        setFault(.disk, fault)
        release(work.identity.key)
        intake.finished(work.arrival.path)
        retries.append((work.arrival, work.identity.series, Date().addingTimeInterval(5)))
    }

    private func release(_ key: String) { stateLock.withLock { _ = inFlightSOPs.remove(key) } }

    private func notice(_ a: Journal.AlertRecord) -> AlertNotice {
        AlertNotice(id: a.id, raisedAt: a.raisedAt, studyUID: a.studyUID, seriesUID: a.seriesUID, slice: a.slice,
                    probabilities: ClassProbabilities(values: a.probabilities.count == ClassProbabilities.keys.count ? a.probabilities
                                                      : [Double?](repeating: nil, count: ClassProbabilities.keys.count)),
                    latencyMs: a.latencyMs, accession: a.accession)
    }

    // MARK: - Housekeeping (finisher thread, between files)

    private func housekeeping() {
        let now = Date()
        // Retries whose time has come go back to the intake.
        if !retries.isEmpty {
            let due = retries.filter { $0.2 <= now }
            retries.removeAll { $0.2 <= now }
            for (arrival, series, _) in due where FileManager.default.fileExists(atPath: arrival.path) {
                intake.add(IntakeQueue.Item(arrival: arrival, series: series))
            }
        }
        finalizeQuietSeries(now)
        watchdog(now)
        retention(now)
        if let untilIdle, isIdle(now, for: untilIdle) { requestStop() }
    }

    private func finalizeQuietSeries(_ now: Date) {
        let quiet = currentConfig.seriesQuietSeconds
        // Files a scan found still being written belong to some series not yet known: wait for them.
        guard !watcher.isSettling else { return }
        for (uid, state) in series {
            let last = max(state.lastDone, stateLock.withLock { lastArrival[uid] ?? .distantPast })
            guard now.timeIntervalSince(last) >= quiet, intake.activeCount(series: uid) == 0 else { continue }
            let f = state.evidence.finding
            let result = SeriesResultNotice(
                studyUID: state.study, seriesUID: uid, positive: state.evidence.isUrgent, scored: f.slicesScored,
                skipped: state.evidence.skipped, rejected: state.rejected,
                maxima: ClassProbabilities(classNames: f.classNames, probabilities: f.slicesScored > 0 ? f.maxProbabilities : []),
                alertID: state.alertID, ood: f.ood.map(Double.init))
            do {
                try journal.finalizeSeries(uid, result: result.positive ? "POS" : "NEG")
            } catch {
                setFault(.disk, "journal: \(error)")
                continue
            }
            series[uid] = nil
            stateLock.withLock {
                _ = lastArrival.removeValue(forKey: uid)
                recentResults.append(SeriesResultRecord(result: result, finishedAt: now))
                if recentResults.count > Self.recentResultsKept { recentResults.removeFirst(recentResults.count - Self.recentResultsKept) }
            }
            alerts.publish(result)
            logger.notice("RESULT", metadata: ["series": "\(uid)", "result": "\(result.positive ? "POS" : "NEG")", "scored": "\(result.scored)",
                                               "skipped": "\(result.skipped)", "rejected": "\(result.rejected)", "alert": "\(result.alertID ?? "-")"])
        }
    }

    private func isIdle(_ now: Date, for seconds: TimeInterval) -> Bool {
        guard series.isEmpty, retries.isEmpty, intake.count == 0, finishQueue.isEmpty, !watcher.isSettling else { return false }
        return stateLock.withLock { now.timeIntervalSince(lastAnyArrival) >= seconds }
    }

    private func budgetChanged() {
        let (degraded, p95) = stateLock.withLock { (latency.degraded, latency.percentiles([95])[0] ?? 0) }
        setFault(.budget, degraded ? "slices over the \(currentConfig.sliceBudgetMs) ms budget (p95 \(Int(p95)) ms)" : nil)
    }

    /// WATCHDOG=1 only while the scorer loop and the decoder show signs of life: a hung stage stops the
    /// pings and systemd restarts the daemon.
    private func watchdog(_ now: Date) {
        let (scorerAt, busySince) = stateLock.withLock { (scorerAliveAt, decoderBusySince) }
        let scorerAlive = now.timeIntervalSince(scorerAt) < 60 * 5
        let decoderAlive = busySince.map { now.timeIntervalSince($0) < 60 } ?? true
        let interval = notifier.watchdogInterval ?? 5
        guard now.timeIntervalSince(lastWatchdog) >= interval else { return }
        lastWatchdog = now
        let s = status()
        let summary = "\(s.health.rawValue) queue \(s.pipeline.queue) p99 \(s.pipeline.p99Ms.map { "\($0) ms" } ?? "-") alerts pending \(alerts.pending.count)"
        if scorerAlive && decoderAlive {
            notifier.notify("WATCHDOG=1\nSTATUS=\(summary)")
        } else {
            logger.critical("a pipeline stage is stuck; watchdog pings withheld",
                            metadata: ["scorer_idle_s": "\(Int(now.timeIntervalSince(scorerAt)))",
                                       "decoder_busy_s": "\(busySince.map { Int(now.timeIntervalSince($0)) } ?? 0)"])
        }
    }

    /// `folders.retention_days`: archived day folders older than that are removed (never the quarantine, never
    /// anything when it is 0).
    private func retention(_ now: Date) {
        let days = currentConfig.retentionDays
        guard days > 0, now.timeIntervalSince(lastRetention) > 3600 else { return }
        lastRetention = now
        let cutoff = FileMover.day(now.addingTimeInterval(-Double(days) * 86400))
        for day in (try? FileManager.default.contentsOfDirectory(atPath: config.archiveFolder)) ?? []
        where day.count == 10 && day < cutoff {
            try? FileManager.default.removeItem(atPath: config.archiveFolder + "/" + day)
            logger.notice("retention: archived day removed", metadata: ["day": "\(day)", "retention_days": "\(days)"])
        }
    }

    // MARK: - Reload (SIGHUP)

    private func reload() {
        notifier.notify("RELOADING=1")
        defer { notifier.notify("READY=1") }
        let fresh: DaemonConfig
        do {
            fresh = try DaemonConfig.load(path: config.sourcePath)
        } catch {
            logger.error("reload refused: the running configuration stays", metadata: ["reason": "\(error)"])
            return
        }
        do {
            let count = scorerLock.withLock { currentScorers.count }
            let scorers = try (0..<count).map { _ in try SliceScorer(path: fresh.modelPath, threads: fresh.threads) }
            scorerLock.withLock { currentScorers = scorers }
        } catch {
            logger.error("reload refused: the new model cannot be loaded; the old one keeps running", metadata: ["reason": "\(error)"])
            setFault(.model, nil)
            return
        }
        var restartOnly: [String] = []
        if fresh.dropFolder != config.dropFolder || fresh.archiveFolder != config.archiveFolder || fresh.quarantineFolder != config.quarantineFolder
            || fresh.stateFolder != config.stateFolder { restartOnly.append("folders") }
        if fresh.serial != config.serial { restartOnly.append("serial") }
        if fresh.lamp != config.lamp { restartOnly.append("lamp") }
        if fresh.scorers != config.scorers { restartOnly.append("model.scorers") }
        let sha = Self.modelSHA(path: fresh.modelPath)
        stateLock.withLock {
            currentConfig = fresh
            currentModel = (Self.modelID(path: fresh.modelPath), sha)
            latency = LatencyTracker(budgetMs: fresh.sliceBudgetMs)
        }
        logger.notice("reloaded", metadata: ["model": "\(Self.modelID(path: fresh.modelPath))", "model_sha": "\(sha)",
                                             "restart_needed_for": "\(restartOnly.isEmpty ? "-" : restartOnly.joined(separator: ","))"])
    }

    // MARK: - Start-up recovery

    /// Moves the journal recorded but did not confirm, and the evidence of series not yet final.
    private func recoverFromJournal() {
        for record in (try? journal.unmovedInstances()) ?? [] {
            let source = config.dropFolder + "/" + record.source
            if FileManager.default.fileExists(atPath: record.destination) {
                try? journal.confirmMove(record.sopUID)
            } else if FileManager.default.fileExists(atPath: source) {
                do {
                    try FileMover.move(source, to: record.destination)
                    try journal.confirmMove(record.sopUID)
                    logger.info("finished an interrupted move", metadata: ["file": "\(record.source)"])
                } catch {
                    setFault(.disk, "move: \(error)")
                }
            } else {
                logger.warning("a recorded file is neither in the drop folder nor at its destination", metadata: ["file": "\(record.source)"])
                try? journal.confirmMove(record.sopUID)
            }
        }
        let scorer = currentScorer
        for s in (try? journal.openSeries()) ?? [] {
            var evidence = SeriesEvidence(classNames: scorer.classNames, thresholds: scorer.thresholds, adjacentSlices: config.adjacentSlices)
            for slice in s.slices {
                if let p = slice.probabilities, p.count == scorer.classNames.count {
                    evidence.add(SliceScore(classNames: scorer.classNames, logits: [], probabilities: p, thresholds: scorer.thresholds, heatmaps: [],
                                            ood: slice.ood),
                                 key: slice.sortKey, instance: slice.instance)
                } else {
                    evidence.addSkipped(key: slice.sortKey, instance: slice.instance)
                }
            }
            series[s.seriesUID] = SeriesState(study: s.studyUID, evidence: evidence, rejected: s.rejected, alertID: s.alertID, lastDone: Date())
        }
    }
}

/// One file on its way through the decoder and scorer: its frames' results gather here until the last.
final class FileWork: @unchecked Sendable {
    let arrival: Arrival
    let identity: Daemon.FileIdentity
    private let lock = NSLock()
    private var expected: Int
    private var _results: [FrameResult] = []
    private var _rejection: IngestRejection?

    init(arrival: Arrival, identity: Daemon.FileIdentity, frameCount: Int) {
        self.arrival = arrival
        self.identity = identity
        expected = frameCount
    }

    var results: [FrameResult] { lock.withLock { _results } }
    var rejection: IngestRejection? { lock.withLock { _rejection } }
    var isRejected: Bool { rejection != nil }

    func setRejection(_ r: IngestRejection) { lock.withLock { if _rejection == nil { _rejection = r } } }
    func setFrameCount(_ n: Int) { lock.withLock { expected = n } }

    /// Adds a frame's result; true when it was the last.
    func add(_ r: FrameResult) -> Bool {
        lock.withLock {
            _results.append(r)
            return _results.count >= expected
        }
    }
}

struct FrameResult: Sendable {
    var frame: Int
    var key: Double
    var instance: Int?
    /// Nil when skipped (too little brain) or when the file was refused.
    var score: SliceScore?
    var scoredAt: Date
    var preparedAt: Date
    var scoreStartedAt: Date
    var classNames: [String]
    var thresholds: [Float]
}

struct ScoreItem: Sendable {
    enum Target: Sendable {
        case file(FileWork)
        /// A console upload's slice, its report drafted by the decoder.
        case upload(UploadTicket, SliceReport)
    }
    var target: Target
    /// When decoding and preprocessing of this slice ended (the time spent waiting for the scorer starts).
    var preparedAt = Date()
    var frame: Int
    var key: Double
    var instance: Int?
    var input: ModelInput?
}

/// A blocking FIFO with a capacity: `push` waits while full (the decoder pauses when the scorer is behind).
final class BoundedQueue<Element: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [Element] = []
    private let capacity: Int
    private var closed = false

    init(capacity: Int) { self.capacity = capacity }

    var isEmpty: Bool { condition.withLock { items.isEmpty } }
    var isClosed: Bool { condition.withLock { closed } }

    func push(_ e: Element) {
        condition.withLock {
            while items.count >= capacity, !closed { condition.wait() }
            guard !closed else { return }
            items.append(e)
            condition.broadcast()
        }
    }

    func pop(timeout: TimeInterval) -> Element? {
        condition.withLock {
            let deadline = Date().addingTimeInterval(timeout)
            while items.isEmpty, !closed {
                if !condition.wait(until: deadline) { return nil }
            }
            guard !items.isEmpty else { return nil }
            let e = items.removeFirst()
            condition.broadcast()
            return e
        }
    }

    func close() {
        condition.withLock {
            closed = true
            condition.broadcast()
        }
    }
}

/// One console upload on its way through the decoder and scorers: reports gather here; `completion` runs
/// once, when every file is decoded and every slice sent to a scorer is back.
final class UploadTicket: @unchecked Sendable, Equatable {
    let names: [String: String]   // temp path -> the name the client gave
    let heatmaps: Bool
    let startedAt = Date()
    private let lock = NSLock()
    private var reports: [SliceReport] = []
    private var filesLeft: Int
    private var scoring = 0
    private var arrivals = 0
    private var completion: (@Sendable ([SliceReport]) -> Void)?

    init(names: [String: String], heatmaps: Bool, completion: @escaping @Sendable ([SliceReport]) -> Void) {
        self.names = names
        self.heatmaps = heatmaps
        filesLeft = names.count
        self.completion = completion
        if names.isEmpty { finishIfDone() }
    }

    static func == (a: UploadTicket, b: UploadTicket) -> Bool { a === b }

    func nextArrival() -> Int { lock.withLock { defer { arrivals += 1 }; return arrivals } }
    func expect() { lock.withLock { scoring += 1 } }

    /// A report; `fromScorer` for one that went to a scorer after `expect()`.
    func add(_ report: SliceReport, fromScorer: Bool = false) {
        lock.withLock {
            reports.append(report)
            if fromScorer { scoring -= 1 }
        }
        finishIfDone()
    }

    func decoded() {
        lock.withLock { filesLeft -= 1 }
        finishIfDone()
    }

    private func finishIfDone() {
        let done: (@Sendable ([SliceReport]) -> Void, [SliceReport])? = lock.withLock {
            guard filesLeft <= 0, scoring <= 0, let c = completion else { return nil }
            completion = nil
            return (c, reports)
        }
        if let (c, r) = done { c(r) }
    }
}
