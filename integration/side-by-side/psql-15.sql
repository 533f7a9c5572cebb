-- tool: psql 15 (its backslash commands, which build their catalog SQL from src/bin/psql/describe.c)
-- name: \d trades
-- source: src/bin/psql/describe.c
-- compare: all
\d trades

-- name: \d+ trades
-- source: src/bin/psql/describe.c
-- compare: all
-- differs: psql output
\d+ trades

-- name: \dt
-- source: src/bin/psql/describe.c
-- compare: all
\dt

-- name: \dt+
-- source: src/bin/psql/describe.c
-- compare: all
-- differs: psql output
\dt+

-- name: \d
-- source: src/bin/psql/describe.c
-- compare: all
\d

-- name: \dn
-- source: src/bin/psql/describe.c
-- compare: all
-- differs: psql output
\dn

-- name: \dn+
-- source: src/bin/psql/describe.c
-- compare: all
-- differs: psql output
\dn+

-- name: \l
-- source: src/bin/psql/describe.c
-- compare: rows-with velostream
-- differs: psql output
\l

-- name: \du
-- source: src/bin/psql/describe.c
-- compare: rows-with velo
-- differs: psql output
\du

-- name: \dg
-- source: src/bin/psql/describe.c
-- compare: rows-with velo
-- differs: psql output
\dg

-- name: \dv
-- source: src/bin/psql/describe.c
-- compare: all
\dv

-- name: \dm
-- source: src/bin/psql/describe.c
-- compare: all
\dm

-- name: \ds
-- source: src/bin/psql/describe.c
-- compare: all
\ds

-- name: \di
-- source: src/bin/psql/describe.c
-- compare: all
\di

-- name: \dp
-- source: src/bin/psql/describe.c
-- compare: all
\dp

-- name: \z trades
-- source: src/bin/psql/describe.c
-- compare: all
\z trades

-- name: \dd
-- source: src/bin/psql/describe.c
-- compare: all
\dd

-- name: \dc
-- source: src/bin/psql/describe.c
-- compare: all
\dc

-- name: \do
-- source: src/bin/psql/describe.c
-- compare: all
\do

-- name: \dy
-- source: src/bin/psql/describe.c
-- compare: all
\dy

-- name: \dF
-- source: src/bin/psql/describe.c
-- compare: all
\dF

-- name: \dFd
-- source: src/bin/psql/describe.c
-- compare: all
\dFd

-- name: \dFp
-- source: src/bin/psql/describe.c
-- compare: all
\dFp

-- name: \dFt
-- source: src/bin/psql/describe.c
-- compare: all
\dFt

-- name: \dX
-- source: src/bin/psql/describe.c
-- compare: all
\dX

-- name: \dO
-- source: src/bin/psql/describe.c
-- compare: all
\dO

-- name: \ddp
-- source: src/bin/psql/describe.c
-- compare: all
\ddp

-- name: \dT
-- source: src/bin/psql/describe.c
-- compare: all
\dT

-- name: \dT+
-- source: src/bin/psql/describe.c
-- compare: all
\dT+

-- name: \df
-- source: src/bin/psql/describe.c
-- compare: all
\df

-- name: \df+
-- source: src/bin/psql/describe.c
-- compare: all
\df+

-- name: \dx
-- source: src/bin/psql/describe.c
-- compare: all
\dx

-- name: \dx+
-- source: src/bin/psql/describe.c
-- compare: all
\dx+

-- name: \db
-- source: src/bin/psql/describe.c
-- compare: rows-with pg_default
-- differs: psql output
\db

-- name: \dL
-- source: src/bin/psql/describe.c
-- compare: all
-- differs: psql output
\dL

-- name: \dC
-- source: src/bin/psql/describe.c
-- compare: shape
\dC

-- name: \dD
-- source: src/bin/psql/describe.c
-- compare: all
\dD

-- name: \des
-- source: src/bin/psql/describe.c
-- compare: all
\des

-- name: \dew
-- source: src/bin/psql/describe.c
-- compare: all
\dew

-- name: \det
-- source: src/bin/psql/describe.c
-- compare: all
\det

-- name: \deu
-- source: src/bin/psql/describe.c
-- compare: all
\deu

-- name: \dRp
-- source: src/bin/psql/describe.c
-- compare: all
\dRp

-- name: \dRs
-- source: src/bin/psql/describe.c
-- compare: all
\dRs

-- name: \drds
-- source: src/bin/psql/describe.c
-- compare: all
\drds

-- name: \dconfig
-- source: src/bin/psql/describe.c
-- compare: shape
\dconfig

-- name: \sf pg_catalog.lower(text)
-- source: src/bin/psql/describe.c
-- compare: all
\sf pg_catalog.lower(text)

-- name: \dA
-- source: src/bin/psql/describe.c
-- compare: all
\dA

-- name: \dAc
-- source: src/bin/psql/describe.c
-- compare: shape
\dAc

-- name: \dE
-- source: src/bin/psql/describe.c
-- compare: all
\dE

-- name: \dP
-- source: src/bin/psql/describe.c
-- compare: all
\dP
