import Foundation
import GRDB

/// The daemon's memory across crashes: SQLite (through GRDB) in WAL mode with `synchronous = FULL`, so a
/// committed transaction survives `kill -9` and power loss. Keyed by SOP Instance UID, never by path.
///
/// What makes the daemon exactly-once:
/// - a file's slices, their scores and its outcome are committed in one transaction, before anything is
///   announced or moved; a crash before the commit leaves the file in the drop folder, where the start-up
///   scan finds it again (it is scored then, for the first time as far as the journal knows);
/// - an alert row is unique per series and committed before its ALERT line is sent, so a restart announces
///   it again with the same id but can never raise a second one;
/// - a move is recorded as intended (destination) in that same transaction and confirmed after the rename;
///   at start-up an unconfirmed move is finished or confirmed, never repeated as a new intake.
/// `scorings` is append-only: one row per time a slice was scored, so a test can prove "exactly once".
public final class Journal: @unchecked Sendable {
    let db: DatabaseQueue
    public let path: String

    public init(folder: String) throws {
        path = (folder as NSString).appendingPathComponent("journal.sqlite")
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        config.busyMode = .timeout(10)
        db = try DatabaseQueue(path: path, configuration: config)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE instances (
                    sop_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL,
                    source TEXT NOT NULL, received_at REAL NOT NULL, done_at REAL NOT NULL,
                    outcome TEXT NOT NULL,            -- scored | skipped | rejected
                    reason TEXT,                      -- rejection code and message
                    destination TEXT NOT NULL, moved INTEGER NOT NULL DEFAULT 0);
                CREATE INDEX instances_series ON instances(series_uid);
                CREATE TABLE slices (
                    sop_uid TEXT NOT NULL, frame INTEGER NOT NULL, series_uid TEXT NOT NULL,
                    sort_key REAL NOT NULL, instance INTEGER, scored INTEGER NOT NULL,
                    probabilities TEXT, latency_ms INTEGER, PRIMARY KEY (sop_uid, frame));
                CREATE INDEX slices_series ON slices(series_uid);
                CREATE TABLE scorings (id INTEGER PRIMARY KEY AUTOINCREMENT, sop_uid TEXT NOT NULL, frame INTEGER NOT NULL, at REAL NOT NULL);
                CREATE TABLE series (
                    series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL, rejected INTEGER NOT NULL DEFAULT 0,
                    final INTEGER NOT NULL DEFAULT 0, result TEXT, results_sent INTEGER NOT NULL DEFAULT 0, final_at REAL);
                CREATE TABLE alerts (
                    id TEXT PRIMARY KEY, series_uid TEXT NOT NULL UNIQUE, study_uid TEXT NOT NULL, slice INTEGER,
                    probabilities TEXT NOT NULL, latency_ms INTEGER NOT NULL, raised_at REAL NOT NULL,
                    accession TEXT, acked_at REAL, acked_by TEXT);
                CREATE TABLE duplicates (id INTEGER PRIMARY KEY AUTOINCREMENT, sop_uid TEXT NOT NULL, at REAL NOT NULL, destination TEXT NOT NULL, moved INTEGER NOT NULL DEFAULT 0);
                """)
        }
        // v2: each scored slice's out-of-distribution score, so a series' `ood` survives a restart.
        migrator.registerMigration("v2") { db in
            try db.execute(sql: "ALTER TABLE slices ADD COLUMN ood REAL")
        }
        try migrator.migrate(db)
    }

    // MARK: - Instances

    public struct InstanceRecord: Sendable, Equatable {
        public var sopUID: String
        public var seriesUID: String
        public var source: String
        public var outcome: String
        public var destination: String
        public var moved: Bool

        static let columns = "sop_uid, series_uid, source, outcome, destination, moved"

        init(_ row: Row) {
            (sopUID, seriesUID, source, outcome, destination, moved) = (row[0], row[1], row[2], row[3], row[4], row[5])
        }
    }

    public func instance(_ sopUID: String) throws -> InstanceRecord? {
        try db.read { db in
            try Row.fetchOne(db, sql: "SELECT \(InstanceRecord.columns) FROM instances WHERE sop_uid = ?", arguments: [sopUID])
                .map(InstanceRecord.init)
        }
    }

    /// Moves recorded but not confirmed (a crash between commit and rename, or a failed move).
    public func unmovedInstances() throws -> [InstanceRecord] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT \(InstanceRecord.columns) FROM instances WHERE moved = 0").map(InstanceRecord.init)
        }
    }

    public struct SliceRecord: Sendable {
        public var frame: Int
        public var sortKey: Double
        public var instance: Int?
        /// Nil for a skipped slice.
        public var probabilities: [Float]?
        public var latencyMs: Int?
        /// The slice's `ood` score (nil: skipped, or a model without an out-of-distribution summary).
        public var ood: Float?

        public init(frame: Int, sortKey: Double, instance: Int?, probabilities: [Float]?, latencyMs: Int?, ood: Float? = nil) {
            self.ood = ood
            self.frame = frame
            self.sortKey = sortKey
            self.instance = instance
            self.probabilities = probabilities
            self.latencyMs = latencyMs
        }
    }

    public struct InstanceOutcome: Sendable {
        public var sopUID: String
        public var studyUID: String
        public var seriesUID: String
        public var source: String
        public var receivedAt: Date
        public var outcome: String
        public var reason: String?
        public var destination: String
        public var slices: [SliceRecord]

        public init(sopUID: String, studyUID: String, seriesUID: String, source: String, receivedAt: Date, outcome: String,
                    reason: String?, destination: String, slices: [SliceRecord]) {
            self.sopUID = sopUID
            self.studyUID = studyUID
            self.seriesUID = seriesUID
            self.source = source
            self.receivedAt = receivedAt
            self.outcome = outcome
            self.reason = reason
            self.destination = destination
            self.slices = slices
        }
    }

    /// A new alert, committed with the instance that completed its evidence.
    public struct AlertRecord: Sendable, Equatable {
        public var id: String
        public var seriesUID: String
        public var studyUID: String
        public var slice: Int?
        public var probabilities: [Double?]
        public var latencyMs: Int
        public var raisedAt: Date
        public var accession: String?

        public init(id: String, seriesUID: String, studyUID: String, slice: Int?, probabilities: [Double?], latencyMs: Int,
                    raisedAt: Date, accession: String?) {
            self.id = id
            self.seriesUID = seriesUID
            self.studyUID = studyUID
            self.slice = slice
            self.probabilities = probabilities
            self.latencyMs = latencyMs
            self.raisedAt = raisedAt
            self.accession = accession
        }
    }

    /// One transaction: the instance, its slices, one `scorings` row per scored slice, the series (reopened
    /// if it was final), and the alert when this instance completed the evidence. Returns whether the alert
    /// row is new (false: the series already had one; nothing is raised twice).
    @discardableResult
    public func commit(_ o: InstanceOutcome, alert: AlertRecord? = nil) throws -> Bool {
        try db.write { db in
            let now = Date().timeIntervalSince1970
            try db.execute(sql: """
                INSERT INTO instances (sop_uid, study_uid, series_uid, source, received_at, done_at, outcome, reason, destination, moved)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
                """, arguments: [o.sopUID, o.studyUID, o.seriesUID, o.source, o.receivedAt.timeIntervalSince1970, now,
                                 o.outcome, o.reason, o.destination])
            for s in o.slices {
                try db.execute(sql: """
                    INSERT INTO slices (sop_uid, frame, series_uid, sort_key, instance, scored, probabilities, latency_ms, ood)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [o.sopUID, s.frame, o.seriesUID, s.sortKey, s.instance, s.probabilities != nil,
                                     s.probabilities.map(Self.encode), s.latencyMs, s.ood.map { Double($0) }])
                if s.probabilities != nil {
                    try db.execute(sql: "INSERT INTO scorings (sop_uid, frame, at) VALUES (?, ?, ?)", arguments: [o.sopUID, s.frame, now])
                }
            }
            // A file that names no series (not DICOM) belongs to none.
            if !o.seriesUID.isEmpty {
                try db.execute(sql: """
                INSERT INTO series (series_uid, study_uid, rejected, final) VALUES (?, ?, ?, 0)
                ON CONFLICT(series_uid) DO UPDATE SET final = 0, rejected = rejected + excluded.rejected
                """, arguments: [o.seriesUID, o.studyUID, o.outcome == "rejected" ? 1 : 0])
            }
            guard let a = alert else { return false }
            try db.execute(sql: """
                INSERT OR IGNORE INTO alerts (id, series_uid, study_uid, slice, probabilities, latency_ms, raised_at, accession)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [a.id, a.seriesUID, a.studyUID, a.slice, Self.encode(a.probabilities), a.latencyMs,
                                 a.raisedAt.timeIntervalSince1970, a.accession])
            return db.changesCount > 0
        }
    }

    public func confirmMove(_ sopUID: String) throws {
        try db.write { db in try db.execute(sql: "UPDATE instances SET moved = 1 WHERE sop_uid = ?", arguments: [sopUID]) }
    }

    /// A second copy of an instance already done: recorded, then archived beside the first.
    public func recordDuplicate(_ sopUID: String, destination: String) throws -> Int64 {
        try db.write { db in
            try db.execute(sql: "INSERT INTO duplicates (sop_uid, at, destination) VALUES (?, ?, ?)",
                           arguments: [sopUID, Date().timeIntervalSince1970, destination])
            return db.lastInsertedRowID
        }
    }

    public func confirmDuplicateMove(_ id: Int64) throws {
        try db.write { db in try db.execute(sql: "UPDATE duplicates SET moved = 1 WHERE id = ?", arguments: [id]) }
    }

    // MARK: - Series

    public struct SeriesRecord: Sendable {
        public var seriesUID: String
        public var studyUID: String
        public var rejected: Int
        public var slices: [SliceRecord]
        public var alertID: String?
    }

    /// Series not yet final, with their slices, for rebuilding the evidence after a restart.
    public func openSeries() throws -> [SeriesRecord] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT series_uid, study_uid, rejected FROM series WHERE final = 0 AND series_uid != ''").map { row in
                let uid: String = row[0]
                let slices = try Row.fetchAll(db, sql: """
                    SELECT frame, sort_key, instance, probabilities, latency_ms, ood FROM slices WHERE series_uid = ? ORDER BY sort_key
                    """, arguments: [uid]).map {
                    SliceRecord(frame: $0[0], sortKey: $0[1], instance: $0[2], probabilities: ($0[3] as String?).map(Self.decodeFloats), latencyMs: $0[4],
                                ood: ($0[5] as Double?).map(Float.init))
                }
                let alert = try String.fetchOne(db, sql: "SELECT id FROM alerts WHERE series_uid = ?", arguments: [uid])
                return SeriesRecord(seriesUID: uid, studyUID: row[1], rejected: row[2], slices: slices, alertID: alert)
            }
        }
    }

    public func finalizeSeries(_ seriesUID: String, result: String) throws {
        try db.write { db in
            try db.execute(sql: "UPDATE series SET final = 1, result = ?, results_sent = results_sent + 1, final_at = ? WHERE series_uid = ?",
                           arguments: [result, Date().timeIntervalSince1970, seriesUID])
        }
    }

    // MARK: - Alerts

    public func alertID(series seriesUID: String) throws -> String? {
        try db.read { db in try String.fetchOne(db, sql: "SELECT id FROM alerts WHERE series_uid = ?", arguments: [seriesUID]) }
    }

    /// Alerts raised and not acknowledged, oldest first (announced again at start).
    public func pendingAlerts() throws -> [AlertRecord] {
        try db.read { db in
            try Row.fetchAll(db, sql: """
                SELECT id, series_uid, study_uid, slice, probabilities, latency_ms, raised_at, accession
                FROM alerts WHERE acked_at IS NULL ORDER BY raised_at
                """).map {
                AlertRecord(id: $0[0], seriesUID: $0[1], studyUID: $0[2], slice: $0[3], probabilities: Self.decodeOptionalDoubles($0[4]),
                            latencyMs: $0[5], raisedAt: Date(timeIntervalSince1970: $0[6]), accession: $0[7])
            }
        }
    }

    /// Records an acknowledgement; false when the alert is unknown or was already acknowledged.
    @discardableResult
    public func acknowledge(_ id: String, by: String) throws -> Bool {
        try db.write { db in
            try db.execute(sql: "UPDATE alerts SET acked_at = ?, acked_by = ? WHERE id = ? AND acked_at IS NULL",
                           arguments: [Date().timeIntervalSince1970, by, id])
            return db.changesCount > 0
        }
    }

    // MARK: - Figures (status, tests)

    public struct Counts: Sendable, Equatable {
        public var instances = 0, scoredSlices = 0, scorings = 0, skippedSlices = 0, rejected = 0, duplicates = 0
        public var alerts = 0, acknowledged = 0, seriesFinal = 0, series = 0
    }

    public func counts() throws -> Counts {
        try db.read { db in
            func n(_ sql: String) throws -> Int { try Int.fetchOne(db, sql: sql) ?? 0 }
            return Counts(instances: try n("SELECT count(*) FROM instances"),
                          scoredSlices: try n("SELECT count(*) FROM slices WHERE scored = 1"),
                          scorings: try n("SELECT count(*) FROM scorings"),
                          skippedSlices: try n("SELECT count(*) FROM slices WHERE scored = 0"),
                          rejected: try n("SELECT count(*) FROM instances WHERE outcome = 'rejected'"),
                          duplicates: try n("SELECT count(*) FROM duplicates"),
                          alerts: try n("SELECT count(*) FROM alerts"),
                          acknowledged: try n("SELECT count(*) FROM alerts WHERE acked_at IS NOT NULL"),
                          seriesFinal: try n("SELECT count(*) FROM series WHERE final = 1"),
                          series: try n("SELECT count(*) FROM series"))
        }
    }

    // Probabilities as compact text: "0.01234,0.5,..." (nil as "-").
    static func encode(_ p: [Float]) -> String { p.map { String($0) }.joined(separator: ",") }
    static func encode(_ p: [Double?]) -> String { p.map { $0.map { String($0) } ?? "-" }.joined(separator: ",") }
    static func decodeFloats(_ s: String) -> [Float] { s.split(separator: ",").map { Float($0) ?? 0 } }
    static func decodeOptionalDoubles(_ s: String) -> [Double?] { s.split(separator: ",").map { Double($0) } }
}
