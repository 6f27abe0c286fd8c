import LicenseCore
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTP answer.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of a header (names compare case-insensitively).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// Fetches documents (discovery, JWKS) from identity providers.
public protocol HTTPFetching: Sendable {
    /// GETs `url`, failing after `timeout`.
    func get(_ url: String, timeout: Duration) async throws -> HTTPResponse
}

/// A minimal HTTP/1.1 GET client over SwiftNIO: one connection per request (`Connection:
/// close`), TLS with the system's trust roots and hostname verification for `https`, plain
/// HTTP only to loopback hosts, no redirects, bodies up to 1 MiB.
public struct NIOHTTPFetcher: HTTPFetching {
    private let tls: TLSConfiguration
    private let group: any EventLoopGroup
    /// The largest body accepted.
    public let maxBodyBytes: Int

    /// `tls` defaults to the system's trust roots with full verification.
    public init(tls: TLSConfiguration = .makeClientConfiguration(), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, maxBodyBytes: Int = 1 << 20) {
        self.tls = tls
        self.group = group
        self.maxBodyBytes = maxBodyBytes
    }

    public func get(_ text: String, timeout: Duration) async throws -> HTTPResponse {
        let url = try HTTPURL(text, purpose: "the URL")
        let context = url.secure ? try NIOSSLContext(configuration: tls) : nil
        let limit = maxBodyBytes
        let timedOut = { @Sendable in
            LicenseError(.unavailable, .identityProviderUnavailable, "the identity provider did not answer within \(timeout)") as any Error
        }
        return try await withDeadline(timeout, orThrow: timedOut) { [group] in
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(5))
                .connect(host: url.host, port: url.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let context {
                            let isAddress = url.host.contains(":") || url.host.allSatisfy { $0.isNumber || $0 == "." }
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: isAddress ? nil : url.host))
                        }
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
            return try await channel.executeThenClose { inbound, outbound in
                var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: url.target)
                let defaultPort = url.secure ? 443 : 80
                head.headers.add(name: "Host", value: url.port == defaultPort ? url.host : "\(url.host):\(url.port)")
                head.headers.add(name: "Accept", value: "application/json")
                head.headers.add(name: "User-Agent", value: "coditect-licensed")
                head.headers.add(name: "Connection", value: "close")
                try await outbound.write(.head(head))
                try await outbound.write(.end(nil))
                var status = 0
                var headers: [(name: String, value: String)] = []
                var body: [UInt8] = []
                for try await part in inbound {
                    switch part {
                    case .head(let response):
                        status = Int(response.status.code)
                        headers = response.headers.map { ($0.name, $0.value) }
                    case .body(var buffer):
                        guard body.count + buffer.readableBytes <= limit else {
                            throw LicenseError(.unavailable, .identityProviderUnavailable, "the response from \(url.host) is larger than \(limit) bytes")
                        }
                        body += buffer.readBytes(length: buffer.readableBytes) ?? []
                    case .end:
                        return HTTPResponse(status: status, headers: headers, body: body)
                    }
                }
                throw LicenseError(.unavailable, .identityProviderUnavailable, "\(url.host) closed the connection before the response ended")
            }
        }
    }
}
