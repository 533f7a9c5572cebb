// pgjdbc over TLS with a SCRAM password, while the gateway offers
// SCRAM-SHA-256-PLUS: the driver must still log in and query.
// Usage: TlsLogin HOST PORT USER PASSWORD
import java.sql.*;
import java.util.Properties;

public class TlsLogin {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("user", args[2]);
        props.setProperty("password", args[3]);
        props.setProperty("sslmode", "require");
        props.setProperty("connectTimeout", "10");
        props.setProperty("socketTimeout", "20");
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/velostream";
        try (Connection c = DriverManager.getConnection(url, props);
             Statement s = c.createStatement();
             ResultSet rs = s.executeQuery("SELECT x FROM (VALUES ('jdbc-over-tls')) AS t(x)")) {
            rs.next();
            System.out.println("tls login " + rs.getString(1));
        }
    }
}
