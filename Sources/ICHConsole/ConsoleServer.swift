import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import ICHDaemon
import ICHDecision
import Logging
import NIOCore

/// The local web console (docs/console.md): status and pending alerts with Acknowledge, upload-and-score, a JSON
/// API for the same and Prometheus metrics. Server-rendered HTML, no external assets (the box is offline).
///
/// Access: on loopback without a token, anyone on the box; with a token (required off loopback) every request
/// needs `Authorization: Bearer TOKEN` or the session cookie the login form sets (HttpOnly, SameSite=Strict),
/// compared in constant time. A state-changing request whose `Origin` is another site is refused (403).
public struct ConsoleServer: Sendable {
    public let settings: ConsoleSettings
    public let backend: any ConsoleBackend
    public let metrics: ConsoleMetrics
    let token: String?
    let uploads: UploadStore
    let logger: Logger

    /// Refuses (ConfigError, key relative to `[console]`) what `ConsoleSettings.accessToken` refuses.
    public init(settings: ConsoleSettings, backend: any ConsoleBackend, metrics: ConsoleMetrics, logger: Logger) throws(ConfigError) {
        self.settings = settings
        self.backend = backend
        self.metrics = metrics
        self.logger = logger
        token = try settings.accessToken()
        uploads = UploadStore(parent: backend.uploadParent, maxBytes: settings.maxUploadMB << 20)
    }

    static let cookieName = "ichd_session"

    /// The cookie's value: derived from the token, so the token itself never sits in the browser.
    var sessionValue: String? {
        token.map { t in HMAC<SHA256>.authenticationCode(for: Data("ichd console session".utf8), using: SymmetricKey(data: Data(t.utf8)))
            .map { String(format: "%02x", $0) }.joined() }
    }

    // MARK: - Application

    /// The application, ready to run (`runService`) or to test (HummingbirdTesting). `onRunning` gets the port.
    public func application(onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(router: router(), configuration: .init(address: .hostname(settings.bind, port: settings.port), serverName: "ichd"),
                    onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) }, logger: logger)
    }

    /// Runs until the task is cancelled.
    public func run(onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try uploads.prepare()
        try await application(onRunning: onRunning).runService(gracefulShutdownSignals: [])
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ConsoleGuard(server: self))
        let pages = ConsolePages(showIdentifiers: settings.showIdentifiers)
        router.get("/") { _, _ in html(pages.status(backend.status())) }
        router.get("/upload") { _, _ in html(pages.upload(status: backend.status(), reports: nil, error: nil)) }
        router.post("/upload") { request, _ in
            do {
                let (reports, ms) = try await score(request, heatmaps: true)
                return html(pages.upload(status: backend.status(), reports: (reports, ms), error: nil))
            } catch let e as ConsoleError {
                return html(pages.upload(status: backend.status(), reports: nil, error: e.message), status: e.status)
            }
        }
        router.post("/alerts/:id/ack") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard backend.acknowledge(id) else {
                return html(pages.message("Not pending", "Alert \(id) is not pending (already acknowledged, or unknown)."), status: .notFound)
            }
            return Response(status: .seeOther, headers: [.location: "/"])
        }
        router.get("/login") { _, _ in html(pages.login(error: nil)) }
        router.post("/login") { request, _ in
            let form = try await request.body.collect(upTo: 4096)
            let given = URLComponents(string: "?" + String(buffer: form))?.queryItems?.first { $0.name == "token" }?.value ?? ""
            guard let token, let session = sessionValue, Self.constantTimeEqual(given, token) else {
                return html(pages.login(error: "Wrong token."), status: .unauthorized)
            }
            var response = Response(status: .seeOther, headers: [.location: "/"])
            response.setCookie(Cookie(name: Self.cookieName, value: session, path: "/", httpOnly: true, sameSite: .strict))
            return response
        }
        router.get("/console.css") { _, _ in asset(ConsolePages.css, type: "text/css; charset=utf-8") }
        router.get("/console.js") { _, _ in asset(ConsolePages.script, type: "text/javascript; charset=utf-8") }

        router.get("/api/status") { _, _ in json(ConsoleJSON.status(backend.status(), showIdentifiers: settings.showIdentifiers)) }
        router.post("/api/score") { request, _ in
            do {
                let images = request.uri.queryParameters.get("images").map { ["1", "true", "yes"].contains($0) } ?? false
                let (reports, ms) = try await score(request, heatmaps: images)
                return json(ConsoleJSON.score(reports, milliseconds: ms, status: backend.status(), images: images,
                                              showIdentifiers: settings.showIdentifiers))
            } catch let e as ConsoleError {
                return json(["error": e.message], status: e.status)
            }
        }
        router.post("/api/alerts/:id/ack") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard backend.acknowledge(id) else { return json(["error": "alert \(id) is not pending"], status: .notFound) }
            return json(["acknowledged": id, "by": "web"])
        }
        router.get("/metrics") { _, _ in
            asset(metrics.exposition(backend.status()), type: "text/plain; version=0.0.4; charset=utf-8")
        }
        return router
    }

    /// Reads, checks and scores an upload; the files live in a private folder only while they are scored.
    func score(_ request: Request, heatmaps: Bool) async throws -> ([SliceReport], Double) {
        let started = Date()
        let batch = try await uploads.receive(request)
        defer { batch.remove() }
        logger.info("console upload", metadata: ["files": "\(batch.files.count)", "bytes": "\(batch.bytes)"])
        let reports = await backend.score(batch.files, heatmaps: heatmaps)
        return (reports, Date().timeIntervalSince(started) * 1000)
    }

    /// Equal strings in time independent of where they differ (the length only is revealed).
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in x.indices { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}

/// A refusal with the status it answers with.
struct ConsoleError: Error {
    let status: HTTPResponse.Status
    let message: String
}

/// Token, same-origin rule and the headers every answer carries.
struct ConsoleGuard: RouterMiddleware {
    typealias Context = BasicRequestContext
    let server: ConsoleServer

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        if let refusal = refusal(request) {
            response = refusal
        } else {
            do {
                response = try await next(request, context)
            } catch let e as HTTPResponseError where e.status == .contentTooLarge {
                response = plain("upload larger than \(server.settings.maxUploadMB) MB (max_upload_mb)", status: .contentTooLarge)
            }
        }
        // Nothing from outside: the pages load only their own CSS and script; images are inline.
        response.headers[.contentSecurityPolicy] = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.cacheControl] = "no-store"
        // same-origin, not no-referrer: under no-referrer browsers send `Origin: null` with form posts, which the
        // same-origin rule above would refuse.
        response.headers[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        return response
    }

    func refusal(_ request: Request) -> Response? {
        let path = request.uri.path
        // A browser names the page that sent a POST; another site's page may not act here (the cookie is
        // SameSite=Strict too). Clients that send no Origin (curl, integrations) are not browsers.
        if request.method == .post, let origin = request.headers[.origin],
           request.head.authority.map({ origin != "http://\($0)" && origin != "https://\($0)" }) ?? true {
            return plain("cross-site request refused (Origin \(origin))", status: .forbidden)
        }
        guard let token = server.token else { return nil }
        if request.method == .post && path == "/login" { return nil }
        if let auth = request.headers[.authorization], auth.hasPrefix("Bearer "),
           ConsoleServer.constantTimeEqual(String(auth.dropFirst(7)).trimmingCharacters(in: .whitespaces), token) { return nil }
        if let cookie = request.cookies[ConsoleServer.cookieName]?.value, let session = server.sessionValue,
           ConsoleServer.constantTimeEqual(cookie, session) { return nil }
        var response: Response
        if path.hasPrefix("/api/") {
            response = json(["error": "an access token is needed (Authorization: Bearer ...)"], status: .unauthorized)
        } else if path == "/metrics" || path.hasSuffix(".css") || path.hasSuffix(".js") {
            response = plain("an access token is needed (Authorization: Bearer ...)", status: .unauthorized)
        } else {
            response = html(ConsolePages(showIdentifiers: false).login(error: nil), status: .unauthorized)
        }
        response.headers[.wwwAuthenticate] = "Bearer realm=\"ichd console\""
        return response
    }
}

func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
}

func plain(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text + "\n")))
}

func asset(_ text: String, type: String) -> Response {
    Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: text)))
}

func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}
