package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestIssuedCertificatesVerify(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("test CA", now.Add(-time.Hour), now.Add(time.Hour))
	require.NoError(t, err)
	other, err := NewCA("other CA", now.Add(-time.Hour), now.Add(time.Hour))
	require.NoError(t, err)
	c, err := ca.Issue([]string{"127.0.0.1", "node1.example"}, now.Add(-time.Hour), now.Add(time.Hour))
	require.NoError(t, err)
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	require.NoError(t, err)
	leaf := pair.Leaf
	require.Equal(t, c.Serial, leaf.SerialNumber)

	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(ca.CertPEM))
	for _, use := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{use}})
		require.NoError(t, err)
	}
	require.NoError(t, leaf.VerifyHostname("127.0.0.1"))
	require.NoError(t, leaf.VerifyHostname("node1.example"))
	require.Error(t, leaf.VerifyHostname("127.0.0.2"))

	otherPool := x509.NewCertPool()
	require.True(t, otherPool.AppendCertsFromPEM(other.CertPEM))
	_, err = leaf.Verify(x509.VerifyOptions{Roots: otherPool})
	require.Error(t, err, "signed by another CA")

	expired, err := ca.Issue([]string{"127.0.0.1"}, now.Add(-2*time.Hour), now.Add(-time.Hour))
	require.NoError(t, err)
	pair, err = tls.X509KeyPair(expired.CertPEM, expired.KeyPEM)
	require.NoError(t, err)
	_, err = pair.Leaf.Verify(x509.VerifyOptions{Roots: pool})
	require.Error(t, err, "expired")
	require.NotEqual(t, c.Serial, expired.Serial)
}
