/// Flow files: mitmproxy's tnetstring format and HAR. (Being written; see issue 3.)
public enum MitmIO {}
