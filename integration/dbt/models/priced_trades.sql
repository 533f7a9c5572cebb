-- Trades with their notional value.
select symbol, price, volume, price * volume as notional, ts
from {{ source('market', 'trades') }}
