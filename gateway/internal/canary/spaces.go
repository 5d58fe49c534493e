package canary

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// Spaces is the part of search a rollout changes: collections (vector
// spaces) and the aliases that say which one is live.
type Spaces interface {
	Aliases(ctx context.Context) ([]searchv1.AliasInfo, error)
	Collections(ctx context.Context) ([]searchv1.CollectionInfo, error)
	CreateCollection(ctx context.Context, r searchv1.CreateCollectionRequest) (searchv1.CollectionInfo, error)
	SwitchAlias(ctx context.Context, alias, collection string) (searchv1.AliasInfo, error)
	DeleteAlias(ctx context.Context, alias string) error
	DropCollection(ctx context.Context, name string) error
}

// Doer sends HTTP requests (the gateway's balanced, guarded pool is one).
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// SearchSpaces implements Spaces on a searchv1 client, where removing what
// is already gone succeeds (a rollout step may be retried).
type SearchSpaces struct {
	*searchv1.Client
}

// DeleteAlias removes an alias; removing an absent alias succeeds.
func (s SearchSpaces) DeleteAlias(ctx context.Context, alias string) error {
	err := s.Client.DeleteAlias(ctx, alias)
	if apierror.CodeOf(err) == apierror.CodeNotFound {
		return nil
	}
	return err
}

// DropCollection deletes a collection; dropping an absent one succeeds.
func (s SearchSpaces) DropCollection(ctx context.Context, name string) error {
	err := s.Client.DropCollection(ctx, name)
	if apierror.CodeOf(err) == apierror.CodeNotFound {
		return nil
	}
	return err
}

// callJSON sends in (JSON, when not nil) with an optional bearer key and
// decodes a 2xx answer into out (when not nil); a non-2xx answer becomes
// the *apierror.Error of its envelope.
func callJSON(ctx context.Context, d Doer, method, u, key string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding %s %s: %w", method, u, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("building %s %s: %w", method, u, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := d.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apierror.FromResponse(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return fmt.Errorf("decoding %s %s: %w", method, u, err)
	}
	return nil
}
