import Foundation
import MitmCore
import NIOCore
import MitmAddons
import MitmTestSupport
import Testing

// MARK: - Fixtures

/// Five flows, built the same way as the mitmproxy flows the tables below were computed on
/// (mitmproxy's `test.tutils.treq()` / `tresp()` defaults where not said otherwise).
enum FlowFilterFixtures {
    static func request(
        method: String = "GET",
        scheme: String = "http",
        host: String = "address",
        port: Int = 22,
        authority: String = "",
        path: String = "/path",
        httpVersion: String = "HTTP/1.1",
        headers: Headers = Headers([("header", "qvalue"), ("content-length", "7")]),
        body: String = "content"
    ) -> HTTPRequest {
        HTTPRequest(
            method: method, scheme: scheme, host: host, port: port, authority: authority, path: path,
            httpVersion: httpVersion, headers: headers, rawContent: ByteBuffer(string: body), timestampStart: 946_681_200
        )
    }

    static func response(
        httpVersion: String = "HTTP/1.1",
        statusCode: Int = 200,
        reason: String = "OK",
        headers: Headers = Headers([("header-response", "svalue"), ("content-length", "7")]),
        body: String = "message"
    ) -> HTTPResponse {
        HTTPResponse(
            httpVersion: httpVersion, statusCode: statusCode, reason: reason, headers: headers,
            rawContent: ByteBuffer(string: body), timestampStart: 946_681_202
        )
    }

    static func flow(
        _ request: HTTPRequest,
        peer: Address = Address(host: "127.0.0.1", port: 22),
        server: Address? = Address(host: "address", port: 22)
    ) -> HTTPFlow {
        let client = ClientConnection(peername: peer, sockname: Address(host: "127.0.0.1", port: 8080), proxyMode: "regular", timestampStart: 1)
        return HTTPFlow(request: request, clientConnection: client, serverConnection: server.map { ServerConnection(address: $0, usesTLS: false) })
    }

    static let flows: [HTTPFlow] = {
        // 0: a request without response.
        let f0 = flow(request())
        // 1: with a response.
        var f1 = flow(request())
        f1.response = response()
        // 2: with error, mark, comment, metadata, replayed request.
        var f2 = f1
        f2.error = FlowError("connection killed")
        f2.marked = ":default:"
        f2.comment = "a comment\nsecond line"
        f2.metadata = ["key": "value", "other": "thing"]
        f2.isReplay = "request"
        // 3: POST with Host header, gzip JSON request body, brotli CSS 404 response, replayed response,
        //    no server connection.
        var f3 = flow(
            request(
                method: "POST", scheme: "https", host: "10.0.0.1", port: 443, path: "/Api/Login?user=Bob",
                headers: Headers([("Host", "Example.COM"), ("Content-Type", "application/json; charset=utf-8"), ("Content-Encoding", "gzip")]),
                body: ""
            ),
            server: nil
        )
        try! f3.request.setText(#"{"user":"bob","token":"abc123"}"#)
        var r3 = response(statusCode: 404, reason: "Not Found", headers: Headers([("content-type", "text/css"), ("content-encoding", "br")]), body: "")
        try! r3.setText("body {\n  color: red }")
        f3.response = r3
        f3.isReplay = "response"
        // 4: IPv6 client, HTTP/2 request with :authority, two Content-Type fields, a body that claims
        //    gzip but is not.
        var f4 = flow(
            request(
                method: "get", host: "www.test.org", port: 8080, authority: "www.test.org:8080", httpVersion: "HTTP/2.0",
                headers: Headers([("accept", "*/*")]), body: ""
            ),
            peer: Address(host: "::1", port: 5000),
            server: Address(host: "www.test.org", port: 8080)
        )
        f4.response = response(
            httpVersion: "HTTP/2.0",
            headers: Headers([("content-type", "text/plain"), ("Content-Type", "image/png"), ("content-encoding", "gzip")]),
            body: "not gzip at all"
        )
        return [f0, f1, f2, f3, f4]
    }()

    /// Expressions and whether they match flows 0...4 (`1` = match), as computed by mitmproxy 11.0.2's
    /// `flowfilter.parse(expr)(flow)` on the same five flows; `nil` = mitmproxy rejects the expression.
    static let oracle: [(String, String?)] = [
        (#"~q"#, "10000"),
        (#"~s"#, "01111"),
        (#"~e"#, "00100"),
        (#"~all"#, "11111"),
        (#"~http"#, "11111"),
        (#"~tcp"#, "00000"),
        (#"~udp"#, "00000"),
        (#"~dns"#, "00000"),
        (#"~websocket"#, "00000"),
        (#"~marked"#, "00100"),
        (#"~replay"#, "00110"),
        (#"~replayq"#, "00100"),
        (#"~replays"#, "00010"),
        (#"~a"#, "00011"),
        (#"~c 200"#, "01101"),
        (#"~c 404"#, "00010"),
        (#"~c 0200"#, "01101"),
        (#"~c 201"#, "00000"),
        (#"~m get"#, "11101"),
        (#"~m GET"#, "11101"),
        (#"~m post"#, "00010"),
        (#"~m ^P"#, "00010"),
        (#"~d address"#, "11100"),
        (#"~d ADDRESS"#, "11100"),
        (#"~d example.com"#, "00010"),
        (#"~d ^example"#, "00010"),
        (#"~d 10\.0"#, "00010"),
        (#"~d test.org"#, "00001"),
        (#"~u address"#, "11100"),
        (#"~u /path$"#, "11101"),
        (#"~u https://example.com/api"#, "00010"),
        (#"~u user=bob"#, "00010"),
        (#"~u :8080"#, "00001"),
        (#"~u http://address:22/path"#, "11100"),
        (#"~u ^http://address:22/path$"#, "11100"),
        (#"address"#, "11100"),
        (#"PATH"#, "11101"),
        (#"/api/login"#, "00010"),
        (#"example"#, "00010"),
        (#"~h header"#, "11100"),
        (#"~h Header"#, "00000"),
        (#"~h ^header:\sqvalue"#, "11100"),
        (#"~h qvalue$"#, "00000"),
        (#"~h qvalue\r$"#, "11100"),
        (#"~h "svalue""#, "01100"),
        (#"~hq svalue"#, "00000"),
        (#"~hq qvalue"#, "11100"),
        (#"~hs svalue"#, "01100"),
        (#"~hs header"#, "01100"),
        (#"~h Content-Type"#, "00011"),
        (#"~hq ^Host:\sExample"#, "00010"),
        (#"~hs "content-type: text/plain""#, "00001"),
        (#"~t json"#, "00010"),
        (#"~t css"#, "00010"),
        (#"~t JSON"#, "00000"),
        (#"~tq json"#, "00010"),
        (#"~tq css"#, "00000"),
        (#"~ts css"#, "00010"),
        (#"~ts image/png"#, "00001"),
        (#"~ts text/plain"#, "00001"),
        (#"~b content"#, "11100"),
        (#"~b message"#, "01100"),
        (#"~b nonexistent"#, "00000"),
        (#"~b token"#, "00010"),
        (#"~b abc\d+"#, "00010"),
        (#"~b "abc\\d+""#, "00010"),
        (#"~b "color:.red""#, "00010"),
        (#"~b "\{\n""#, "00010"),
        (#"~b "\\{\n""#, "00010"),
        (#"~b gzip"#, "00001"),
        (#"~b "not gzip""#, "00001"),
        (#"~bq content"#, "11100"),
        (#"~bq message"#, "00000"),
        (#"~bq bob"#, "00010"),
        (#"~bs message"#, "01100"),
        (#"~bs content"#, "00000"),
        (#"~bs color"#, "00010"),
        (#"~bs red"#, "00010"),
        (#"~b """#, "11111"),
        (#"~src 127.0.0.1"#, "11110"),
        (#"~src :22$"#, "11110"),
        (#"~src ::1:5000"#, "00001"),
        (#"~src ^127"#, "11110"),
        (#"~dst address"#, "11100"),
        (#"~dst address:22"#, "11100"),
        (#"~dst :8080"#, "00001"),
        (#"~dst 10.0.0.1"#, "00000"),
        (#"~meta key"#, "00100"),
        (#"~meta "^other: thing$""#, "00100"),
        (#"~meta "^key: value$""#, "00100"),
        (#"~meta value\nother"#, "00100"),
        (#"~marker default"#, "00100"),
        (#"~marker :default:"#, "00100"),
        (#"~marker ^$"#, "11011"),
        (#"~comment comment"#, "00100"),
        (#"~comment ^second"#, "00100"),
        (#"~comment "line$""#, "00100"),
        (#"!~q"#, "01111"),
        (#"!~s"#, "10000"),
        (#"~q & ~s"#, "00000"),
        (#"~q | ~s"#, "11111"),
        (#"~s & ~c 200"#, "01101"),
        (#"~s & !~c 200"#, "00010"),
        (#"!~c 200 & ~s"#, "00010"),
        (#"~q ~s"#, "00000"),
        (#"~s ~c 404"#, "00010"),
        (#"~c 200 | ~c 404"#, "01111"),
        (#"~c 200 | ~c 404 & ~m post"#, "01111"),
        (#"(~c 200 | ~c 404) & ~m post"#, "00010"),
        (#"( ~c 200 | ~c 404 ) & ~m post"#, "00010"),
        (#"!~a & ~s | ~q"#, "11100"),
        (#"!(~a & ~s) | ~q"#, nil),
        (#"!~q & ~s | ~e"#, "01111"),
        (#"~e | ~q ~s"#, "00100"),
        (#"~s ~e | ~q"#, "00100"),
        (#"!!~q"#, "10000"),
        (#"! ! ~s"#, "01111"),
        (#"~m post ~b token"#, "00010"),
        (#"~q &"#, "00000"),
        (#"~q |"#, "10000"),
        (#"~s !"#, "00000"),
        (#"foo&bar"#, "00000"),
        (#"address&path"#, "00000"),
        (#"!foo"#, "11111"),
        (#"!address"#, "00011"),
        (#"~u address|nothing"#, "11100"),
        (#"~h "a b""#, "00000"),
        (#"~b 'color: red'"#, "00010"),
        (#"~b "color: red""#, "00010"),
        (#"~b "co\lor""#, "00010"),
        (#"~meta "key: value""#, "00100"),
        (#"~c 200x"#, "00000"),
        (#"~q & ~s | ~a & ~c 200"#, "00001"),
        (#"~a | ~e & ~q"#, "00011"),
    ]

    /// Expressions and the tree mitmproxy 11.0.2 parses them to, spelled as `FlowFilter.description`
    /// spells it (`nil`: mitmproxy rejects the expression).
    static let syntax: [(String, String?)] = [
        (#"~q"#, #"~q"#),
        (#"  ~q  "#, #"~q"#),
        (#"~q&~s"#, nil),
        (#"~q & ~s"#, #"~q & ~s"#),
        (#"(~q)"#, nil),
        (#"( ~q )"#, #"~q"#),
        (#"(~q ~s)"#, nil),
        (#"(~q & ~s)"#, nil),
        (#"( ~q & ~s )"#, #"~q & ~s"#),
        (#"~q ~s | ~a"#, #"~q & (~s | ~a )"#),
        (#"~q | ~s ~a"#, #"(~q | ~s ) & ~a"#),
        (#"!~q ~s"#, #"!~q & ~s"#),
        (#"!~q & ~s | ~a"#, #"!~q & ~s | ~a"#),
        (#"~a | !~q & ~s"#, #"~a | !~q & ~s"#),
        (#"!(~q & ~s )"#, #"!(~q & ~s )"#),
        (#"!( ~q | ~s )"#, #"!(~q | ~s )"#),
        (#"~c 200 | ~c 404 & ~m post"#, #"~c 200 | ~c 404 & ~m "post""#),
        (#"(~c 200 | ~c 404) & ~m post"#, #"(~c 200 | ~c 404) & ~m "post""#),
        (#"~q & ~s & ~a"#, #"~q & ~s & ~a"#),
        (#"~q | ~s | ~a"#, #"~q | ~s | ~a"#),
        (#"(~q & ~s) & ~a"#, nil),
        (#"~q & (~s & ~a )"#, #"~q & (~s & ~a )"#),
        (#"!!~q"#, #"!!~q"#),
        (#"! ! ~q"#, #"!!~q"#),
        (#"!"#, #"~u "!""#),
        (#"~q !"#, #"~q & ~u "!""#),
        (#"~q &"#, #"~q & ~u "&""#),
        (#"~q |"#, #"~q & ~u "|""#),
        (#"& ~q"#, #"~u "&" & ~q"#),
        (#"| ~q"#, #"~u "|" & ~q"#),
        (#"foo&bar"#, #"~u "foo&bar""#),
        (#"foo|bar"#, #"~u "foo|bar""#),
        (#"!foo"#, #"!~u "foo""#),
        (#"a!"#, #"~u "a!""#),
        (#"~c 200x"#, #"~c 200 & ~u "x""#),
        (#"~c 0200"#, #"~c 200"#),
        (#"~c -1"#, nil),
        (#"~c"#, nil),
        (#"~c200"#, nil),
        (#"~u"#, nil),
        (#"~u foo"#, #"~u "foo""#),
        (#"~ufoo"#, nil),
        (#"~u\#("\t")foo"#, #"~u "foo""#),
        (#"~u "foo bar""#, #"~u "foo bar""#),
        (#"~u 'foo bar'"#, #"~u "foo bar""#),
        (#"~u "it's""#, #"~u "it's""#),
        (#"~u 'say "hi"'"#, #"~u "say \"hi\"""#),
        (#"~u "a\"b""#, #"~u "a\"b""#),
        (#"~u 'a\'b'"#, #"~u "a'b""#),
        (#"~u "a\\b""#, #"~u "a\\b""#),
        (#"~u "a\nb""#, #"~u "a\nb""#),
        (#"~u "a\tb""#, #"~u "a\tb""#),
        (#"~u "a\db""#, #"~u "adb""#),
        (#"~u "a\\db""#, #"~u "a\\db""#),
        (#"~u "\x412""#, #"~u "x412""#),
        (#"~u "\03""#, #"~u "03""#),
        (#"~u """#, #"~u """#),
        (#""""#, #"~u """#),
        (#"''"#, #"~u """#),
        (#"~b "abc"#, nil),
        (#"~qé"#, #"~q & ~u "é""#),
        (#"~bé"#, #"~b "é""#),
        (#"~src ~dst x"#, nil),
        (#"~b "a" "b""#, #"~b "a" & ~u "b""#),
        (#"~h foo ~h bar"#, #"~h "foo" & ~h "bar""#),
        (#"~zz"#, nil),
        (#"~ ~q"#, nil),
        (#"~"#, nil),
        (#")"#, nil),
        (#"("#, nil),
        (#"()"#, nil),
        (#"( ~q"#, nil),
        (#"~q )"#, nil),
        (#"~q & ("#, nil),
        (#"~q & ~zz"#, nil),
        (#"~m get|post"#, #"~m "get|post""#),
        (#"~t json"#, #"~t "json""#),
        (#"~d example.com"#, #"~d "example.com""#),
        (#"example.com/path?x=1"#, #"~u "example.com/path?x=1""#),
        (#"~marked ~marker red"#, #"~marked & ~marker "red""#),
        (#"~comment "hello world""#, #"~comment "hello world""#),
        (#"~meta foo"#, #"~meta "foo""#),
        (#"~websocket | ~tcp | ~udp | ~dns"#, #"~websocket | ~tcp | ~udp | ~dns"#),
        (#"~http & ~all"#, #"~http & ~all"#),
        (#"~replay | ~replayq | ~replays"#, #"~replay | ~replayq | ~replays"#),
        (#"~e ~a"#, #"~e & ~a"#),
        (#"~bq x ~bs y"#, #"~bq "x" & ~bs "y""#),
        (#"~hq x ~hs y"#, #"~hq "x" & ~hs "y""#),
        (#"~tq x ~ts y"#, #"~tq "x" & ~ts "y""#),
        (#"~b ["#, nil),
        (#"~b "a{""#, #"~b "a{""#),
        (#"~b "{\"user\"""#, #"~b "{\"user\"""#),
        (#"~b (?P<n>x)"#, nil),
        (#"~b "(?P<n>x)(?P=n)""#, #"~b "(?P<n>x)(?P=n)""#),
        (#"~b "^*""#, nil),
        (#"~b "x{,3}""#, #"~b "x{,3}""#),
    ]

    /// Random combinations of the atoms above, with mitmproxy 11.0.2's verdicts (`nil`: rejected).
    static let combinations: [(String, String?)] = [
        (#"!~ts image/png ~h "a b" ~a | ~src ::1:5000 | ~websocket"#, "00000"),
        (#"~h qvalue\r$ & ~d test.org"#, "00000"),
        (#"~d ADDRESS ~replay | !~hs "content-type: text/plain" | !~b "\\{\n" | ~h qvalue$ & ~meta value\nother"#, "11100"),
        (#"!~b content | ~meta "key: value" & ~b "color:.red" & !!~d 10\.0 | ~h qvalue\r$ | ~src 127.0.0.1"#, "11111"),
        (#"( ~dst 10.0.0.1 & ~c 200x ) ~h qvalue$ & ~d 10\.0 | ~h "a b" & ~e | ( ~bs red ~hs "content-type: text/plain" )"#, nil),
        (#"~hs "content-type: text/plain" & ~http & ~h qvalue$ | ~http"#, "11111"),
        (#"~b 'color: red' & !~b "abc\\d+" & ~bq bob & ~u http://address:22/path ~src ::1:5000"#, "00000"),
        (#"~marked"#, "00100"),
        (#"~h Content-Type | ~udp & ~b "not gzip" & ~hs svalue | ( ~hq qvalue )"#, "11111"),
        (#"!( ( ( ~b 'color: red' ) ) )"#, "11101"),
        (#"~hs "content-type: text/plain" ~bs red & !~m ^P | ~replays !~c 0200"#, "00000"),
        (#"!!address"#, "11100"),
        (#"~b "color:.red" | /api/login ~h header | ~b "abc\\d+" | ~tq json | ~b "color: red""#, "00010"),
        (#"( !!~http | ( example ) )"#, "11111"),
        (#"~d address ~hs "content-type: text/plain" | ~bs color & ( ~websocket ) & ~replay | foo&bar ~websocket ~bs message & ~ts css foo&bar"#, "00000"),
        (#"!~tcp | ~b "abc\\d+" | address | ~u https://example.com/api | ~u ^http://address:22/path$"#, "11111"),
        (#"!~m ^P & ~b abc\d+ ~bs content ~marker default & ~u /path$"#, "00000"),
        (#"~u address|nothing | ~b "not gzip" & ~replay ~dst address:22"#, "11100"),
        (#"~b "color:.red" ~b "abc\\d+" !~d test.org & PATH & ~t css"#, "00000"),
        (#"~d ADDRESS & !( ~b "\{\n" )"#, "11100"),
        (#"~d address & ~websocket & ~c 200 & ~udp"#, "00000"),
        (#"~b 'color: red' ~bs red ~replay ~dst address | !~q & | ~b "abc\\d+" & ~u http://address:22/path"#, "00000"),
        (#"( ~marker ^$ | ~t css | ~q & ) ~u user=bob ~dst address & ~all | ( ~q )"#, nil),
        (#"~meta "^key: value$" ~bq message & ~u user=bob ~meta "^other: thing$" & ( ( ~bs message ) ) & ~b 'color: red' | ~c 0200 & ~b "color:.red" & !~h "a b""#, "00000"),
        (#"!~comment ^second & ~b token & ~u address | ~c 200 ~comment comment"#, "00100"),
        (#"!~t json | ( !example ) & ( ~q & | ~u https://example.com/api ) ~b nonexistent | ( ~replayq )"#, nil),
        (#"~marker default | ~b gzip & ~h Content-Type & ~dst :8080 | !~c 201"#, "11111"),
        (#"!~comment comment ~bq message | ~bs content & ~ts text/plain ~bq message ~ts text/plain"#, "00000"),
        (#"~c 200x | ( ~ts image/png ) ( ~h "a b" )"#, "00000"),
        (#"( ~m GET )"#, "11101"),
        (#"!!~a | ( ~bq content )"#, "11111"),
        (#"~src 127.0.0.1 ~replayq & ~marked & ~m ^P | ~h qvalue$ & ~tcp ~t css & ~src 127.0.0.1 & ~marker default | ~comment ^second ~t json | ~u user=bob"#, "00000"),
        (#"!( !~q & )"#, nil),
        (#"!~dns & ~h qvalue\r$ ~b "not gzip" | !( !~c 201 )"#, "00000"),
        (#"~h qvalue$ | !!~dns"#, "00000"),
        (#"!!~meta "^key: value$" ~c 201 | !~d ^example"#, "00100"),
        (#"( ( address ) ) | ~comment "line$" ~d address"#, "11100"),
        (#"!!~dns | ~u http://address:22/path | ~e & ~marker ^$"#, "11100"),
        (#"( !~b "\\{\n" ) & ~q & ~h qvalue\r$ & !~b "co\lor" | ( ~c 404 )"#, "10010"),
        (#"~b "not gzip" ~b 'color: red'"#, "00000"),
        (#"~hq ^Host:\sExample"#, "00010"),
        (#"~u http://address:22/path & ~q | ~marker :default: | ~d example.com ~u user=bob ~hs "content-type: text/plain" | ~b "\\{\n" & ( PATH | ~hs svalue & ~b token | ~bq message )"#, "00000"),
        (#"( ~hs header | ~h Content-Type ~u ^http://address:22/path$ )"#, nil),
        (#"~u address"#, "11100"),
        (#"( ~u http://address:22/path )"#, "11100"),
        (#"( ~marker :default: & ( ~h "a b" ) ) ( !~meta value\nother )"#, "00000"),
        (#"~udp ~meta "^other: thing$" ~t JSON | !foo&bar ~marked | ~marked & ~d example.com ~src ::1:5000 & ~bq content"#, "00000"),
        (#"~h "svalue" | ~bq message & ~u /path$ | ~dst :8080 ~ts image/png ( ~c 404 ) & ( ( address&path ) ) !( ~h ^header:\sqvalue )"#, "00000"),
        (#"foo&bar | ( ~u address|nothing ) & ~h header | ~h Header & ( ~b "co\lor" ) | ~u http://address:22/path | ~a ~d 10\.0 | ~c 200x & ~hq qvalue"#, "00000"),
        (#"!~b token ~b message | !~marker :default:"#, "11101"),
        (#"( ~d address ) | ( ~c 404 ) | ~bs message | ~dst :8080 ~u ^http://address:22/path$ ~u address ~ts image/png | ~b "abc\\d+" | ~b nonexistent ~bq bob | ~dns"#, "00000"),
        (#"!( ~ts text/plain & ~bq bob ) | ~h Header !~m get | ~b token"#, "00010"),
        (#"!!~h "a b" | !~udp"#, "11111"),
        (#"!~bq content | !~b "co\lor" | ( ~h qvalue$ | ~meta "^other: thing$" )"#, "11111"),
        (#"~bq bob | ~bq content ~src ^127 | ( ~bq message ) ~dns"#, "00000"),
        (#"!~replayq & ~udp & !~ts text/plain & ~comment comment ~dst :8080 ( address&path ~b "\{\n" | ~comment comment | example )"#, nil),
        (#"( !!foo&bar ~marked )"#, nil),
        (#"~src 127.0.0.1 ~ts text/plain"#, "00000"),
        (#"address | !~c 200x ~s !~ts css"#, "00000"),
        (#"~marked ~tq json & ~meta "key: value" | !~b "\\{\n" | ~hq ^Host:\sExample"#, "00100"),
    ]
}

@Suite struct FlowFilterTests {

    // MARK: - Matching, against mitmproxy's results

    @Test(arguments: FlowFilterFixtures.oracle + FlowFilterFixtures.combinations)
    func matchesLikeMitmproxy(_ expression: String, _ expected: String?) throws {
        guard let expected else {
            #expect(throws: FlowFilterError.self) { try FlowFilter(expression) }
            return
        }
        let filter = try FlowFilter(expression)
        let got = String(FlowFilterFixtures.flows.map { filter.matches($0) ? "1" : "0" })
        #expect(got == expected, "\(expression)")
    }

    // MARK: - Parsing, against mitmproxy's trees

    @Test(arguments: FlowFilterFixtures.syntax)
    func parsesLikeMitmproxy(_ expression: String, _ expected: String?) {
        let got = try? FlowFilter(expression).description
        #expect(got == expected, "\(expression.debugDescription)")
    }

    @Test func precedence() throws {
        // `!` binds tightest, then `&`, then `|`; juxtaposition (implicit `&`) is loosest.
        #expect(try FlowFilter("!~a & ~b x | ~c 200").root == .or([
            .and([.not(.flag(.asset)), .regex(.body, try .init("x", for: .body))]),
            .code(200),
        ]))
        #expect(try FlowFilter("~q ~s | ~a").description == "~q & (~s | ~a )")
        #expect(try FlowFilter("~e | ~q ~s").description == "(~e | ~q ) & ~s")
        #expect(try FlowFilter("~q | ~s & ~a").description == "~q | ~s & ~a")
        #expect(try FlowFilter("!!~q").root == .not(.not(.flag(.request))))
        #expect(try FlowFilter("( ~q | ~s ) & ~a").root == .and([.or([.flag(.request), .flag(.response)]), .flag(.asset)]))
        // Lists are flat, left to right.
        #expect(try FlowFilter("~q & ~s & ~a").root == .and([.flag(.request), .flag(.response), .flag(.asset)]))
        let flows = FlowFilterFixtures.flows
        // ~q ~s | ~e is ~q & (~s | ~e): no flow has both no response and a response or error.
        #expect(try flows.filter(FlowFilter("~q ~s | ~e").matches).isEmpty)
        #expect(try flows.filter(FlowFilter("~q & ~s | ~e").matches).count == 1)
    }

    @Test func nestingUpToTheLimit() throws {
        let parens = try FlowFilter(String(repeating: "( ", count: 100) + "~q" + String(repeating: " )", count: 100))
        #expect(parens.root == .flag(.request))
        let nots = try FlowFilter(String(repeating: "!", count: 100) + "~q")
        #expect(FlowFilterFixtures.flows.map(nots.matches) == [true, false, false, false, false])
        #expect(try FlowFilter("~c 99999999999999999999").root == .code(.max))
    }

    @Test func defaultOperatorIsAnd() throws {
        let flows = FlowFilterFixtures.flows
        let implicit = try FlowFilter("~m post ~b token")
        let explicit = try FlowFilter("~m post & ~b token")
        #expect(implicit.root == explicit.root)
        #expect(flows.map(implicit.matches) == [false, false, false, true, false])
        // A bare word is a URL regex, so several words must all occur in the URL.
        #expect(try FlowFilter("foo bar").root == .and([.regex(.url, .init("foo", for: .url)), .regex(.url, .init("bar", for: .url))]))
    }

    @Test func quoting() throws {
        #expect(try FlowFilter(#"~b "color: red""#).root == .regex(.body, .init("color: red", for: .body)))
        #expect(try FlowFilter(#"~b 'color: red'"#).root == .regex(.body, .init("color: red", for: .body)))
        #expect(try FlowFilter(#"~h "a\"b""#).root == .regex(.header, .init(#"a"b"#, for: .header)))
        #expect(try FlowFilter(#"~h 'it\'s'"#).root == .regex(.header, .init("it's", for: .header)))
        // pyparsing's unquoting: `\c` is `c`, so a regex escape needs a doubled backslash…
        #expect(try FlowFilter(#"~b "\d+""#).root == .regex(.body, .init("d+", for: .body)))
        #expect(try FlowFilter(#"~b "\\d+""#).root == .regex(.body, .init(#"\d+"#, for: .body)))
        // …except in a bare word, which is taken as it is.
        #expect(try FlowFilter(#"~b \d+"#).root == .regex(.body, .init(#"\d+"#, for: .body)))
        // \n \t \r \f become the characters; \0 is NUL; pyparsing 3.2's numeric-escape quirks.
        #expect(try FlowFilter(#"~b "a\nb\tc""#).root == .regex(.body, .init("a\nb\tc", for: .body)))
        #expect(try FlowFilter(#"~b "\0""#).root == .regex(.body, .init("\0", for: .body)))
        #expect(try FlowFilter(#"~b "\03""#).root == .regex(.body, .init("03", for: .body)))
        #expect(try FlowFilter(#"~b "\xA2""#).root == .regex(.body, .init("\u{A2}", for: .body)))
        #expect(try FlowFilter(#"~b "\x41""#).root == .regex(.body, .init("x41", for: .body)))
        // Quotes keep operators and parentheses inside the argument.
        #expect(try FlowFilter(#"~u "(a|b) & !c""#).root == .regex(.url, .init("(a|b) & !c", for: .url)))
        // Bare words may contain !, & and |, so `~q &` is `~q` and the URL regex `&`.
        #expect(try FlowFilter("foo&bar|baz!").root == .regex(.url, .init("foo&bar|baz!", for: .url)))
        #expect(try FlowFilter("~q &").root == .and([.flag(.request), .regex(.url, .init("&", for: .url))]))
        // quote(_:) round-trips through the parser.
        for text in ["", "a\"b", "a'b", "back\\slash", "\\d+", "line\nbreak\r\t\u{0C}", "\0 nul", "\\0 3", "é ☃"] {
            #expect(try FlowFilter("~b \(FlowFilter.quote(text))").root == .regex(.body, .init(text, for: .body)), "\(text.debugDescription)")
        }
    }

    @Test func caseRules() throws {
        let flow = FlowFilterFixtures.flows[3]  // POST https://Example.COM/Api/Login?user=Bob
        // ~m, ~d and ~u (and bare words) ignore case…
        #expect(try FlowFilter("~m PoSt").matches(flow))
        #expect(try FlowFilter("~d EXAMPLE.com").matches(flow))
        #expect(try FlowFilter("~u api/LOGIN").matches(flow))
        #expect(try FlowFilter("USER=BOB").matches(flow))
        // …every other regex does not.
        #expect(try !FlowFilter("~hq content-type").matches(flow))
        #expect(try FlowFilter("~hq Content-Type").matches(flow))
        #expect(try !FlowFilter("~t JSON").matches(flow))
        #expect(try !FlowFilter("~b TOKEN").matches(flow))
        #expect(try !FlowFilter("~comment X").matches(flow))
        // Inline flags work where the engine allows them.
        #expect(try FlowFilter(#"~b "(?i)TOKEN""#).matches(flow))
    }

    @Test func bodyMatchingUsesDecodedContent() throws {
        var flow = FlowFilterFixtures.flow(FlowFilterFixtures.request(headers: Headers([("content-encoding", "gzip")]), body: ""))
        try flow.request.setText("secret=42")
        #expect(flow.request.rawContent.map { String(buffer: $0) }?.contains("secret") == false)
        #expect(try FlowFilter(#"~bq "secret=\\d+""#).matches(flow))
        #expect(try FlowFilter("~b secret").matches(flow))
        #expect(try !FlowFilter("~bs secret").matches(flow))
        var response = FlowFilterFixtures.response(headers: Headers([("content-encoding", "zstd")]), body: "")
        try response.setText("line one\nline two")
        flow.response = response
        #expect(try FlowFilter("~bs one.line").matches(flow))  // `.` matches newlines in body regexes
        #expect(try FlowFilter("~bs ^line.one").matches(flow))
        #expect(try !FlowFilter("~bs ^line.two").matches(flow))  // `^` only at the start
        #expect(try !FlowFilter("~bs ^line\\stwo$").matches(flow))
        // A body that does not decode is searched as it is (mitmproxy's get_content(strict=False)).
        flow.response!.rawContent = ByteBuffer(string: "plain after all")
        #expect(try FlowFilter("~bs plain").matches(flow))
        // No body at all (streamed): no match, not even for an empty regex.
        flow.request.rawContent = nil
        flow.response!.rawContent = nil
        #expect(try !FlowFilter(#"~b """#).matches(flow))
    }

    @Test func headerAndMetaLineAnchors() throws {
        let flows = FlowFilterFixtures.flows
        // Header lines end in \r\n, and `$` is before \n only, as in Python.
        #expect(try !FlowFilter("~h qvalue$").matches(flows[0]))
        #expect(try FlowFilter(#"~h "qvalue\\r$""#).matches(flows[0]))
        #expect(try FlowFilter("~hq ^content-length:").matches(flows[0]))
        #expect(try FlowFilter(#"~meta "^other: thing$""#).matches(flows[2]))
        #expect(try FlowFilter("~comment ^second").matches(flows[2]))
    }

    @Test func pythonRegexDialect() throws {
        let flows = FlowFilterFixtures.flows
        // `{` that is not a quantifier is a literal, as in Python.
        #expect(try FlowFilter(#"~bq {"user""#).matches(flows[3]))
        #expect(try FlowFilter(#"~bq "\\{\"user\":\"bob\"""#).matches(flows[3]))
        #expect(try FlowFilter(#"~b "o{,2}k""#).matches(flows[3]))
        #expect(try FlowFilter(#"~b "(?P<q>tok)en.{2}(?P=q)""#).matches(flows[3]) == false)
        #expect(try FlowFilter(#"~b "(?P<q>abc)\\d+""#).matches(flows[3]))
        #expect(try FlowFilter(#"~b "abc123\\Z""#).matches(flows[3]) == false)  // the body ends in "}"
        #expect(try FlowFilter(#"~b "[[]""#).matches(flows[3]) == false)
        #expect(FlowFilter.icuPattern(fromPython: "") == "(?:)")
        #expect(FlowFilter.icuPattern(fromPython: "a{") == "a\\{")
        #expect(FlowFilter.icuPattern(fromPython: "a{2,}b{,3}") == "a{2,}b{0,3}")
        #expect(FlowFilter.icuPattern(fromPython: "[]a[&]") == "[\\]a\\[\\&]")
        #expect(FlowFilter.icuPattern(fromPython: "\\101\\0") == "\\x{41}\\x{0}")
        #expect(FlowFilter.icuPattern(fromPython: "^*") == nil)
    }

    // MARK: - Errors

    @Test(arguments: [
        ("", 0, "empty filter expression"),
        ("   ", 3, "expected a filter"),
        ("~zz", 0, "unknown filter ~zz"),
        ("~q & ~zz", 5, "unknown filter ~zz"),
        ("~", 0, "expected a filter name after '~'"),
        ("(~q)", 3, "expected whitespace after ~q, found ')'"),
        ("~q&~s", 2, "expected whitespace after ~q, found '&'"),
        ("~c200", 2, "expected whitespace after ~c, found '2'"),
        ("~u", 2, "expected a regex after ~u"),
        ("~b (x)", 3, "expected a regex after ~b"),
        ("~c -1", 3, "expected a status code after ~c"),
        ("~b [", 3, #"invalid regex "[" for ~b"#),
        ("~q & ~b '(' ", 8, #"invalid regex "(" for ~b"#),
        ("~h \"a^*\"", 3, #"invalid regex "a^*" for ~h"#),
        (#"~b "abc"#, 3, "unterminated quoted string"),
        ("~q & (", 6, "expected a filter after '('"),
        ("~q | !(", 7, "expected a filter after '('"),
        ("( ~q", 4, "expected ')' to close '(' at position 0"),
        ("(~q ~s)", 4, "expected ')' to close '(' at position 0"),
        (")", 0, "expected a filter"),
        ("~q )", 3, "expected a filter"),
        ("é ~qq", 2, "unknown filter ~qq"),
        (String(repeating: "( ", count: 101) + "~q" + String(repeating: " )", count: 101), 200, "expression nested more than 100 deep"),
        (String(repeating: "!", count: 101) + "~q", 100, "expression nested more than 100 deep"),
    ] as [(String, Int, String)])
    func rejects(_ expression: String, _ position: Int, _ message: String) {
        #expect {
            try FlowFilter(expression)
        } throws: { error in
            guard let error = error as? FlowFilterError else { return false }
            #expect(error.position == position, "\(expression)")
            #expect(error.message == message, "\(expression)")
            #expect(error.description == "\(message) at position \(position)")
            return true
        }
    }

    // MARK: - Properties

    @Test func randomInputNeverCrashesTheParser() {
        var rng = SplitMix64(seed: 0x5EED)
        let alphabet = [
            "~q", "~s", "~b", "~c", "~h", "~u", "~src", "~zz", "~", "!", "&", "|", "(", ")", " ", "\t", "\n", "'", "\"",
            "\\", "a", "1", "200", "é", "[", "]", "{", "}", "*", "?", "^", "$", ".", "~marked", "~all", "\0", "\\x", "\\0",
        ]
        let flows = FlowFilterFixtures.flows
        var accepted = 0
        for _ in 0..<3000 {
            let length = Int.random(in: 1...10, using: &rng)
            let expression = (0..<length).map { _ in alphabet.randomElement(using: &rng)! }.joined()
            do {
                let filter = try FlowFilter(expression)
                accepted += 1
                for flow in flows { _ = filter.matches(flow) }
                // What parses prints to something that parses to the same tree.
                #expect(try FlowFilter(filter.description).root == filter.root, "\(expression.debugDescription)")
            } catch {
                #expect(error.position >= 0 && error.position <= expression.unicodeScalars.count, "\(expression.debugDescription)")
                #expect(!error.message.isEmpty)
            }
        }
        #expect(accepted > 100)
    }

    @Test func generatedTreesRoundTrip() throws {
        var rng = SplitMix64(seed: 42)
        let words = ["x", "", "a b", "it's", "say \"hi\"", "\\d+", "back\\\\slash", "(a|b)", "~q", "!&|", "é", "\n\t", "\\03", "{"]

        func leaf() throws -> FlowFilter.Node {
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: return .flag(FlowFilter.Flag.allCases.randomElement(using: &rng)!)
            case 1: return .code(Int.random(in: 0..<1000, using: &rng))
            default:
                let filter = FlowFilter.RegexFilter.allCases.randomElement(using: &rng)!
                return .regex(filter, try .init(words.randomElement(using: &rng)!, for: filter))
            }
        }
        func tree(_ depth: Int) throws -> FlowFilter.Node {
            guard depth > 0, Int.random(in: 0..<4, using: &rng) != 0 else { return try leaf() }
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: return .not(try tree(depth - 1))
            case 1: return .and(try (0..<Int.random(in: 2...3, using: &rng)).map { _ in try tree(depth - 1) })
            default: return .or(try (0..<Int.random(in: 2...3, using: &rng)).map { _ in try tree(depth - 1) })
            }
        }
        for _ in 0..<500 {
            let node = try tree(4)
            let parsed = try FlowFilter(node.description)
            #expect(parsed.root == node, "\(node.description)")
            #expect(parsed.expression == node.description)
            for flow in FlowFilterFixtures.flows {
                #expect(parsed.matches(flow) == FlowFilter(node).matches(flow))
            }
        }
    }
}

/// TCP and WebSocket flows, against what mitmproxy 11.0.2's `flowfilter` says of its test flows
/// `tflow.ttcpflow()` and `tflow.twebsocketflow()`, which these are built like.
@Suite struct FlowFilterOtherFlowTypesTests {
    static let client = ClientConnection(
        peername: Address(host: "127.0.0.1", port: 22), sockname: Address(host: "127.0.0.1", port: 8080), proxyMode: "regular"
    )
    static let server = ServerConnection(address: Address(host: "address", port: 22), usesTLS: false)

    static let tcp: Flow = {
        var flow = TCPFlow(clientConnection: client, serverConnection: server)
        flow.messages = [
            TCPMessage(fromClient: true, content: ByteBuffer(string: "hello"), timestamp: 946_681_204.2),
            TCPMessage(fromClient: false, content: ByteBuffer(string: "it's me"), timestamp: 946_681_204.5),
        ]
        return .tcp(flow)
    }()

    static let websocket: Flow = {
        let request = HTTPRequest(
            method: "GET", scheme: "http", host: "example.com", port: 80, path: "/ws",
            headers: Headers([("connection", "upgrade"), ("upgrade", "websocket"), ("sec-websocket-version", "13"), ("sec-websocket-key", "1234")])
        )
        var flow = HTTPFlow(request: request, clientConnection: client, serverConnection: server)
        flow.response = HTTPResponse(
            httpVersion: "HTTP/1.1", statusCode: 101, reason: "Switching Protocols",
            headers: Headers([("connection", "upgrade"), ("upgrade", "websocket"), ("sec-websocket-accept", "")])
        )
        flow.websocket = WebSocketData(
            messages: [
                WebSocketMessage(kind: .binary, fromClient: true, content: ByteBuffer(string: "hello binary")),
                WebSocketMessage(kind: .text, fromClient: true, text: "hello text"),
                WebSocketMessage(kind: .text, fromClient: false, text: "it's me"),
            ],
            closedByClient: false,
            closeCode: 1000
        )
        return .http(flow)
    }()

    /// (expression, matches the TCP flow, matches the WebSocket flow), from mitmproxy.
    static let oracle: [(String, Bool, Bool)] = [
        ("~tcp", true, false), ("~websocket", false, true), ("~http", false, true), ("~all", true, true),
        ("~b hello", true, true), ("~bq hello", true, true), ("~bs hello", false, false), ("~bs me", true, true),
        ("~bq me", false, false), ("~b binary", false, true), ("~u address", false, false), ("!~u foo", true, true),
        ("~q", false, false), ("~s", false, true), ("~e", false, false), ("~dst address:22", true, true),
        ("~src 127.0.0.1", true, true), ("~h Upgrade", false, false), ("~m GET", false, true), ("~c 101", false, true),
        ("~d address", false, false), ("~t text", false, false), ("~a", false, false), ("~marked", false, false),
        ("!~tcp & ~b me", false, true), ("~websocket & ~bs me", false, true), ("~tcp | ~websocket", true, true),
        ("~replay", false, false), ("~meta x", false, false),
    ]

    @Test(arguments: oracle.map { [$0.0, "\($0.1)", "\($0.2)"] })
    func matchesLikeMitmproxy(_ row: [String]) throws {
        let filter = try FlowFilter(row[0])
        #expect(filter.matches(Self.tcp) == (row[1] == "true"), "TCP flow")
        #expect(filter.matches(Self.websocket) == (row[2] == "true"), "WebSocket flow")
    }
}
